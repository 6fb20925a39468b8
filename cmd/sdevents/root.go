package main

import (
	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/config"
)

// globals are the flags every command shares.
type globals struct {
	configPath string
	env        map[string]string
}

// load reads the configuration named by --config or SDEVENTS_CONFIG.
func (g *globals) load() (config.Config, error) {
	path := g.configPath
	if path == "" {
		path = g.env[config.EnvConfig]
	}
	return config.Load(path, g.env)
}

// commands are the top-level commands that service files register in init,
// beside the ones newRoot adds itself.
var commands []func(*globals) *cobra.Command

func newRoot(environ []string) *cobra.Command {
	g := &globals{env: config.EnvFrom(environ)}
	root := &cobra.Command{
		Use:           "sdevents",
		Short:         "Receive, verify and record Stable Diffusion platform callbacks on NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what `sdevents version` prints.
		Version: currentBuild().String(),
	}
	root.SetVersionTemplate("{{.Version}}")
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "configuration file (YAML); default $"+config.EnvConfig)
	root.AddCommand(
		newRunCmd(g),
		newServiceCmd(g, "ingress", "Run the HTTP ingress against an external NATS"),
		newSimCmd(g),
		newVersionCmd(),
	)
	for _, c := range commands {
		root.AddCommand(c(g))
	}
	return root
}
