package main

import (
	"errors"
	"flag"
	"io"
	"testing"
)

// TestParseWithIDReadsFlagsAroundTheID checks that flags before, after and
// on both sides of the grant ID are all read, and that stray arguments are
// refused rather than ignored.
func TestParseWithIDReadsFlagsAroundTheID(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		id      string
		reason  string
		wantErr bool
	}{
		{"id first", []string{"g-1", "--token", "t", "--reason", "end"}, "g-1", "end", false},
		{"id last", []string{"--token", "t", "--reason", "end", "g-1"}, "g-1", "end", false},
		{"id between", []string{"--token", "t", "g-1", "--reason", "end"}, "g-1", "end", false},
		{"no id", []string{"--reason", "end"}, "", "", true},
		{"stray argument", []string{"g-1", "--reason", "end", "extra"}, "", "", true},
		{"stray after id between", []string{"--token", "t", "g-1", "extra"}, "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("grants revoke", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.String("token", "", "")
			reason := fs.String("reason", "", "")
			id, err := parseWithID(fs, tc.args)
			if tc.wantErr {
				var ue usageError
				if !errors.As(err, &ue) {
					t.Fatalf("parseWithID(%q) = %q, %v; want a usage error", tc.args, id, err)
				}
				return
			}
			if err != nil || id != tc.id || *reason != tc.reason {
				t.Fatalf("parseWithID(%q) = %q, %v with reason %q; want %q, reason %q", tc.args, id, err, *reason, tc.id, tc.reason)
			}
		})
	}
}

func TestAutofillReadsFlagsAroundTheForm(t *testing.T) {
	for _, args := range [][]string{
		{"--token", "T", "food_business_licence", "--applicant", "X"},
		{"food_business_licence", "--token", "T", "--applicant", "X"},
		{"--applicant", "X", "--token", "T", "food_business_licence"},
	} {
		fs := newFlags("autofill", "autofill", io.Discard)
		token := fs.String("token", "", "")
		applicant := fs.String("applicant", "", "")
		form, err := parseOnePositional(fs, args, "FORM")
		if err != nil || form != "food_business_licence" || *token != "T" || *applicant != "X" {
			t.Errorf("%q: form %q token %q applicant %q err %v", args, form, *token, *applicant, err)
		}
	}
}
