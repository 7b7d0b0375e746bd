package sealed

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpensOnlyForItsKeyAndBinding(t *testing.T) {
	t.Parallel()
	k, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKeyPair()
	b := Binding{Worker: "w1", JobID: "run-1", Attempt: 2}
	values := map[string]string{"DB_PASSWORD": "correct horse battery staple"}
	box, err := Seal(k.Public(), b, values)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(box, []byte("correct horse")) {
		t.Fatal("the sealed box holds the value in clear")
	}
	got, err := k.Open(k.ID(), b, box)
	if err != nil || got["DB_PASSWORD"] != values["DB_PASSWORD"] {
		t.Fatalf("Open = %v, %v", got, err)
	}
	for name, bb := range map[string]Binding{
		"another attempt": {Worker: "w1", JobID: "run-1", Attempt: 3},
		"another job":     {Worker: "w1", JobID: "run-2", Attempt: 2},
		"another worker":  {Worker: "w2", JobID: "run-1", Attempt: 2},
	} {
		if _, err := k.Open(k.ID(), bb, box); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: Open = %v, want ErrOpen", name, err)
		}
	}
	if _, err := other.Open("", b, box); !errors.Is(err, ErrOpen) {
		t.Errorf("another key: Open = %v, want ErrOpen", err)
	}
	if _, err := other.Open(k.ID(), b, box); !errors.Is(err, ErrWrongKey) {
		t.Errorf("another key id: Open = %v, want ErrWrongKey", err)
	}
	box[len(box)-1] ^= 1
	if _, err := k.Open(k.ID(), b, box); !errors.Is(err, ErrOpen) {
		t.Errorf("tampered box: Open = %v, want ErrOpen", err)
	}
}
