package config

import (
	"reflect"
	"strings"
	"time"
)

// EnvKey is the environment variable that sets key: LANYARD_ and the key
// upper-cased with "." replaced by "_" (crl.validity: LANYARD_CRL_VALIDITY).
func EnvKey(key string) string {
	return "LANYARD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// LeafKeys lists every key of Config that can be set from the
// environment, derived from the struct's mapstructure tags so that a new
// field is bound without anyone remembering to. Maps (profiles,
// attribute_mappings) and slices of structs (anchors.targets) are not
// leaves: they are set through the file.
func LeafKeys() []string {
	var keys []string
	walkLeaves(reflect.TypeOf(Config{}), "", func(key string, _ []int) { keys = append(keys, key) })
	return keys
}

var durationType = reflect.TypeOf(time.Duration(0))

// walkLeaves calls fn with the dotted key and field index path of every
// leaf field of t (a struct type).
func walkLeaves(t reflect.Type, prefix string, fn func(key string, index []int)) {
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("mapstructure")
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			if opts == "squash" || (f.Anonymous && name == "") {
				walk(f.Type, prefix, idx)
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			switch ft := f.Type; {
			case ft == durationType:
				fn(key, idx)
			case ft.Kind() == reflect.Struct:
				walk(ft, key+".", idx)
			case ft.Kind() == reflect.Map:
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			default:
				fn(key, idx)
			}
		}
	}
	walk(t, prefix, nil)
}
