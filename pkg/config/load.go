package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "SDEVENTS_"

// EnvConfig names the configuration file when --config is not given.
const EnvConfig = EnvPrefix + "CONFIG"

// processEnv are SDEVENTS_ variables that are not configuration keys.
var processEnv = map[string]bool{EnvConfig: true}

// Load reads the YAML file at path (none when path is ""), applies the
// SDEVENTS_* overrides found in env (name → value), reads *_file secrets and
// validates the result. Every problem is reported, joined, each naming its key.
func Load(path string, env map[string]string) (Config, error) {
	cfg := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if err := decodeStrict(raw, &cfg); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	var errs []error
	used := map[string]bool{}
	errs = append(errs, applyEnv(reflect.ValueOf(&cfg).Elem(), strings.TrimSuffix(EnvPrefix, "_"), "", env, used)...)
	names := make([]string, 0, len(env))
	for name := range env {
		if strings.HasPrefix(name, EnvPrefix) && !used[name] && !processEnv[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		errs = append(errs, fmt.Errorf("%s: unknown key", name))
	}
	errs = append(errs, cfg.readSecretFiles()...)
	if len(errs) == 0 {
		if err := cfg.Validate(); err != nil {
			return Config{}, err
		}
		return cfg, nil
	}
	return Config{}, errors.Join(errs...)
}

// decodeStrict decodes YAML into cfg, refusing keys cfg does not have.
func decodeStrict(raw []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// applyEnv walks v and sets every leaf whose environment name is in env.
// key is the dotted YAML path used in messages.
func applyEnv(v reflect.Value, envName, key string, env map[string]string, used map[string]bool) []error {
	var errs []error
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			errs = append(errs, applyEnv(v.Field(i), envName+"_"+strings.ToUpper(tag), joinKey(key, tag), env, used)...)
		}
		return errs
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			for i := range v.Len() {
				idx := strconv.Itoa(i)
				errs = append(errs, applyEnv(v.Index(i), envName+"_"+idx, key+"["+idx+"]", env, used)...)
			}
			return errs
		}
	}
	val, ok := env[envName]
	if !ok {
		return nil
	}
	used[envName] = true
	if err := setScalar(v, val); err != nil {
		return []error{fmt.Errorf("%s (from %s): %w", key, envName, err)}
	}
	return nil
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// setScalar parses s into v: strings verbatim, lists as comma-separated values
// or a YAML flow list, everything else as a YAML scalar.
func setScalar(v reflect.Value, s string) error {
	switch {
	case v.Kind() == reflect.String:
		v.SetString(s)
		return nil
	case v.Kind() == reflect.Slice && !strings.HasPrefix(strings.TrimSpace(s), "["):
		parts := []string{}
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts).Convert(v.Type()))
		return nil
	}
	nv := reflect.New(v.Type())
	if err := yaml.Unmarshal([]byte(s), nv.Interface()); err != nil {
		return err
	}
	v.Set(nv.Elem())
	return nil
}

// readSecretFiles replaces every *_file key by the file's content (one
// trailing newline removed).
func (c *Config) readSecretFiles() []error {
	var errs []error
	read := func(key, file string, dst *Secret) {
		if file == "" {
			return
		}
		if *dst != "" {
			errs = append(errs, fmt.Errorf("%s: both the value and %s_file are set", key, key))
			return
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_file: %w", key, err))
			return
		}
		*dst = Secret(strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r"))
	}
	for i := range c.Callbacks {
		for j := range c.Callbacks[i].Keys {
			k := &c.Callbacks[i].Keys[j]
			read(fmt.Sprintf("callbacks[%d].keys[%d].sk", i, j), k.SKFile, &k.SK)
		}
	}
	read("nats.password", c.NATS.PasswordFile, &c.NATS.Password)
	read("admin.token", c.Admin.TokenFile, &c.Admin.Token)
	read("archive.s3.secret_key", c.Archive.S3.SecretKeyFile, &c.Archive.S3.SecretKey)
	read("archive.source_s3.secret_key", c.Archive.SourceS3.SecretKeyFile, &c.Archive.SourceS3.SecretKey)
	return errs
}

// EnvFrom returns the SDEVENTS_* variables of an os.Environ-style list.
func EnvFrom(environ []string) map[string]string {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	return env
}
