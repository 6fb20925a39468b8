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
	root.AddCommand(newRunCmd(g))
	for _, t := range targets {
		root.AddCommand(newTargetCmd(g, t))
	}
	root.AddCommand(newReplayCmd(g), newStreamsCmd(g), newSimCmd(g), newVersionCmd())
	return root
}
