package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Precedence of settings, lowest first: built-in defaults, the config file (--config),
// environment variables (MCPWATCH_*), flags. Flags are bound to the fields of the config the
// file decodes into; [binder.apply] re-establishes the order once the file is read.

// binder remembers which environment variable stands for which flag.
type binder struct {
	envs map[string]string // flag name → environment variable
}

func newBinder() *binder { return &binder{envs: map[string]string{}} }

// env registers env as the environment variable of the flag name, and says so in its usage.
func (b *binder) env(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("binder: no flag " + name)
	}
	b.envs[name] = env
	f.Usage += " ($" + env + ")"
}

// apply loads the config file with load, then puts back what the environment and the command
// line said, which the file must not override: environment variables first, flags last.
func (b *binder) apply(cmd *cobra.Command, load func() error) error {
	type saved struct {
		slice []string
		value string
	}
	set := map[string]saved{}
	fs := cmd.Flags()
	fs.Visit(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			set[f.Name] = saved{slice: sv.GetSlice()}
		} else {
			set[f.Name] = saved{value: f.Value.String()}
		}
	})
	if err := load(); err != nil {
		return err
	}
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		s, changed := set[f.Name]
		if !changed {
			env, ok := b.envs[f.Name]
			if !ok {
				return
			}
			v, ok := os.LookupEnv(env)
			if !ok || v == "" {
				return
			}
			if err := setValue(f, v, nil); err != nil {
				errs = append(errs, fmt.Sprintf("$%s: %v", env, err))
			}
			return
		}
		if err := setValue(f, s.value, s.slice); err != nil {
			errs = append(errs, fmt.Sprintf("--%s: %v", f.Name, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// setValue sets a flag's value without marking it changed twice (a slice flag replaces, not
// appends).
func setValue(f *pflag.Flag, v string, slice []string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		if slice == nil {
			slice = strings.Split(v, ",")
		}
		return sv.Replace(slice)
	}
	return f.Value.Set(v)
}

// env is the value of the environment variable k, or def: the default of a flag of a command
// that reads no config section (query, tools, wrap).
func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
