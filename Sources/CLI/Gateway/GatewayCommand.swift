import ArgumentParser

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway", abstract: "Run and manage the gateway.",
        subcommands: [GatewayStart.self, GatewayStatus.self, GatewayStop.self, GatewayReload.self,
                      GatewayPause.self, GatewayResume.self, GatewayInstall.self, GatewayUninstall.self])
}
