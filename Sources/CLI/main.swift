import Dispatch
import Foundation
import Logging
import Worker

// The worker is this same binary re-executed. It must sandbox itself before
// anything starts a thread, so it is dispatched here, ahead of argument parsing
// and of any async code.
if CommandLine.arguments.count > 1, CommandLine.arguments[1] == "worker" {
    WorkerMain.run(arguments: CommandLine.arguments)
}
if CommandLine.arguments.count > 1, CommandLine.arguments[1] == "worker-template" {
    WorkerMain.template()
}

// Logs go to stderr, so stdout stays for what a command prints.
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = ProcessInfo.processInfo.environment["SKELM_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
    return handler
}

Task {
    await Skelm.main()
    exit(0)
}
dispatchMain()
