// Command gpx_mcpwatch is mcpwatch's Grafana backend datasource plugin; Grafana starts it and talks
// to it over gRPC (see mcpwatchds).
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/mcpwatch/mcpwatch/dashboards/plugin/mcpwatchds"
)

func main() {
	if err := datasource.Manage(mcpwatchds.PluginID, mcpwatchds.New, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("plugin stopped", "error", err)
		os.Exit(1)
	}
}
