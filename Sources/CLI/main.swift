import Dispatch
import Foundation
import Worker

// The worker is this same binary re-executed. It must sandbox itself before
// anything starts a thread, so it is dispatched here, ahead of argument parsing
// and of any async code.
if CommandLine.arguments.count > 1, CommandLine.arguments[1] == "worker" {
    WorkerMain.run(arguments: CommandLine.arguments)
}

Task {
    await Skelm.main()
    exit(0)
}
dispatchMain()
