package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Tokens never travel in argv, where every user of the machine reads them
// in ps and /proc/PID/cmdline. They come from, in this order, the
// SKIFF_TOKEN environment variable, one line of standard input
// (--token-stdin) or a file (--token-file, or token_file in the node
// config). The environment is read when the token is needed, never as a
// flag's default, so --help never prints it.

// tokenEnv is the environment variable that carries a token.
const tokenEnv = "SKIFF_TOKEN"

// errTokenInArgv answers the old --token flag.
var errTokenInArgv = errors.New("--token puts the secret in argv, where ps shows it to every user: " +
	"use SKIFF_TOKEN=..., --token-stdin, or --token-file FILE (token_file in the node config)")

// tokenFlags are the flags that say where a command's token comes from.
type tokenFlags struct {
	stdin bool
	file  string
	argv  string // the refused --token
}

// bind defines --token-stdin, --token-file and a hidden --token that only
// refuses (see check).
func (t *tokenFlags) bind(f *pflag.FlagSet) {
	f.BoolVar(&t.stdin, "token-stdin", false, "read the token from the first line of standard input")
	f.StringVar(&t.file, "token-file", "", "read the token from `FILE` (agents: overrides token_file)")
	f.StringVar(&t.argv, "token", "", "refused: tokens never go in argv")
	f.MarkHidden("token") //nolint:errcheck // the flag was just defined
}

// check is a usage error when --token was given.
func (t *tokenFlags) check(cmd *cobra.Command) error {
	if f := cmd.Flags().Lookup("token"); f != nil && f.Changed {
		return errTokenInArgv
	}
	return nil
}

// read returns the token: SKIFF_TOKEN, else stdin with --token-stdin, else
// --token-file, else configFile (token_file of the node config), else "".
func (t *tokenFlags) read(stdin io.Reader, configFile string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(tokenEnv)); v != "" {
		return v, nil
	}
	if t.stdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("--token-stdin: %w", err)
		}
		if line = strings.TrimSpace(line); line == "" {
			return "", errors.New("--token-stdin: standard input is empty")
		}
		return line, nil
	}
	file := t.file
	if file == "" {
		file = configFile
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return v, nil
}
