package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// envValues are valid non-default values for the keys a generic value of
// their type would not pass validation for.
var envValues = map[string]string{
	"listen":               "127.0.0.1:9443",
	"url":                  "https://ca.example.net:9443",
	"crl.distribution_url": "http://crl.example.net/crl",
	"log_level":            "debug",
	"default_profile":      "covalent",
}

// envExtra are further variables a key needs to validate.
var envExtra = map[string]map[string]string{
	"anchors.crl_dp_revocation": {"LANYARD_CRL_DISTRIBUTION_URL": "http://crl.example.net/crl"},
}

// TestEveryLeafKeyFromEnv sets each leaf key of Config, alone, through
// LANYARD_<KEY> and checks the loaded Config carries it.
func TestEveryLeafKeyFromEnv(t *testing.T) {
	type leaf struct {
		key   string
		index []int
	}
	var leaves []leaf
	walkLeaves(reflect.TypeOf(Config{}), "", func(k string, idx []int) { leaves = append(leaves, leaf{k, idx}) })
	if len(leaves) < 40 {
		t.Fatalf("only %d leaf keys found: the walker misses fields", len(leaves))
	}
	path := write(t, minimal)
	for _, l := range leaves {
		t.Run(l.key, func(t *testing.T) {
			ft := reflect.TypeOf(Config{}).FieldByIndex(l.index).Type
			val, want := envValue(t, l.key, ft)
			t.Setenv(EnvKey(l.key), val)
			for k, v := range envExtra[l.key] {
				t.Setenv(k, v)
			}
			cfg, err := Load(NewViper(), path)
			if err != nil {
				t.Fatalf("%s=%s: %v", EnvKey(l.key), val, err)
			}
			got := reflect.ValueOf(*cfg).FieldByIndex(l.index).Interface()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s=%s: config has %v, want %v (the variable is ignored)", EnvKey(l.key), val, got, want)
			}
		})
	}
}

// envValue returns a valid non-default value for key as the environment
// spells it and as the decoded field holds it.
func envValue(t *testing.T, key string, ft reflect.Type) (string, any) {
	if v, ok := envValues[key]; ok {
		return v, v
	}
	switch {
	case ft == durationType:
		return "2h", 2 * time.Hour
	case ft.Kind() == reflect.String:
		return "/env/" + key, "/env/" + key
	case ft.Kind() == reflect.Bool:
		return "true", true
	case ft.Kind() == reflect.Int || ft.Kind() == reflect.Int64:
		if strings.HasSuffix(key, "duration_seconds") {
			return "1800", 1800
		}
		if key == "limits.max_body" {
			return "4096", 4096
		}
		return "30", 30
	case ft.Kind() == reflect.Float64:
		return "2.5", 2.5
	case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
		return "a.example,b.example", []string{"a.example", "b.example"}
	}
	t.Fatalf("%s: no test value for type %s", key, ft)
	return "", nil
}
