package main

import (
	"fmt"
	"io"
	"os"

	"changeprop/rules"
)

// loadConfig reads and validates the config at path ("-" is stdin), with the
// environment's overrides applied.
func loadConfig(path string, stdin io.Reader) (*rules.Config, error) {
	if path == "" {
		return nil, fmt.Errorf("-config is required")
	}
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := rules.LoadEnv(data, rules.Environment{Getenv: os.Getenv, ReadFile: os.ReadFile})
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return cfg, nil
}
