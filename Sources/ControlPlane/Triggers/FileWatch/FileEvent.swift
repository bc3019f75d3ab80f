/// A change to one entry under a watched directory, as a batch reports it.
struct FileEvent: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case created
        /// Written (IN_MODIFY and IN_CLOSE_WRITE, one per path per batch).
        case modified
        case deleted
        /// Renamed to somewhere outside the watch: gone, like `deleted`.
        case movedFrom
        /// Renamed in from outside the watch: there now, like `created`.
        case movedTo
        /// Renamed inside the watch; `FileEvent.path` is the new path.
        case moved(from: String)
    }

    /// Relative to the watched directory, "/" between components.
    let path: String
    let kind: Kind
    let isDirectory: Bool

    init(_ path: String, _ kind: Kind, isDirectory: Bool = false) {
        self.path = path
        self.kind = kind
        self.isDirectory = isDirectory
    }

    /// Something is at `path` that was not there before the batch.
    var isCreateLike: Bool { kind == .created || kind == .movedTo }
    /// Nothing is at `path` any more.
    var isDeleteLike: Bool { kind == .deleted || kind == .movedFrom }
}
