// Command gen writes the dashboards' JSON into dashboards/provisioning/dashboards; run it with
// `go generate ./dashboards`.
package main

import (
	"log"

	"github.com/mcpwatch/mcpwatch/dashboards"
)

func main() {
	if err := dashboards.Write(dashboards.ProvisionedDir); err != nil {
		log.Fatal(err)
	}
}
