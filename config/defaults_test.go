package config

import (
	"fmt"
	"reflect"
	"testing"
)

// TestDefaultsAreLoaded: every default of Defaults reaches the loaded
// Config under its key (SetDefaults registers each leaf, and each decodes
// back to the field's type), and a key the file sets overrides it.
func TestDefaultsAreLoaded(t *testing.T) {
	cfg, err := Load(NewViper(), write(t, minimal+"log_level: warn\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := reflect.ValueOf(Defaults())
	got := reflect.ValueOf(*cfg)
	fromFile := map[string]string{"data_dir": "/tmp/x", "log_level": "warn"}
	n := 0
	walkLeaves(d.Type(), "", func(key string, index []int) {
		def := d.FieldByIndex(index)
		if def.IsZero() {
			return
		}
		n++
		want := fmt.Sprint(def.Interface())
		if v, ok := fromFile[key]; ok {
			want = v
		}
		if g := fmt.Sprint(got.FieldByIndex(index).Interface()); g != want {
			t.Errorf("%s = %s, want %s", key, g, want)
		}
	})
	if n < 20 {
		t.Fatalf("only %d defaults found: Defaults or the walker lost some", n)
	}
}
