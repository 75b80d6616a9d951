// Command step-ca is a minimal entry point for the step-ca authority shipped by
// Debian's golang-github-smallstep-certificates-dev package, which has no cmd/.
// It exposes commands.AppCommand as the top-level action, so
// "step-ca --password-file F ca.json" behaves like upstream step-ca.
package main

import (
	"fmt"
	"os"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/commands"
	"github.com/urfave/cli"
	"go.step.sm/cli-utils/step"
)

// Version is overridden at build time with -ldflags "-X main.Version=...".
var Version = "0.0.0-debian"

func main() {
	step.Set("Smallstep CA", Version, "N/A")
	authority.GlobalVersion.Version = Version

	app := cli.NewApp()
	app.Name = "step-ca"
	app.HelpName = "step-ca"
	app.Usage = "an online certificate authority for secure automated certificate management"
	app.UsageText = commands.AppCommand.UsageText
	app.Version = Version
	app.Flags = commands.AppCommand.Flags
	app.Action = commands.AppCommand.Action
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
