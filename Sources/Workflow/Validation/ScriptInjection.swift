public enum ScriptInjection {
    public struct Finding: Sendable, Equatable {
        public var field: String
        public var expression: String
        public var root: String
        public var message: String
    }
    public static func findings(script: String?, argv: [String]?, interpreter: [String]?) -> [Finding] { [] }
}
