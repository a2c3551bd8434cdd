package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

const autofillSynopsis = `autofill FORM --applicant ID [--bundle] [flags]
       tongban autofill --list

Fills an application form (or, with --bundle, every form of a one-thing
bundle) from the records the departments hold, through a running gateway's
REST API (--url, --token). ID is the unified social credit code of an
enterprise or the resident ID of a person.`

// cmdAutofill implements "tongban autofill".
func cmdAutofill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("autofill", autofillSynopsis, stderr)
	client := clientFlags(fs)
	applicant := fs.String("applicant", "", "credit code of an enterprise or resident ID of a person")
	bundle := fs.Bool("bundle", false, "FORM names a one-thing bundle (一件事)")
	list := fs.Bool("list", false, "list the forms and bundles")
	// Accept the form before, after or between the flags.
	form, err := parseOnePositional(fs, args, "FORM")
	if err != nil {
		return err
	}
	c := client()
	if *list {
		var out v1.ListFormsResponse
		if err := c.call(ctx, "GET", "/v1/forms", nil, &out); err != nil {
			return err
		}
		printFormList(stdout, &out)
		return nil
	}
	if form == "" {
		fs.Usage()
		return usagef("missing FORM")
	}
	if *applicant == "" {
		return usagef("missing --applicant")
	}
	if *bundle {
		var out v1.AutofillBundleResponse
		if err := c.call(ctx, "POST", "/v1/bundles/"+url.PathEscape(form)+":autofill",
			&v1.AutofillBundleRequest{ApplicantId: *applicant}, &out); err != nil {
			return err
		}
		printBundle(stdout, &out)
		return nil
	}
	var out v1.AutofillResponse
	if err := c.call(ctx, "POST", "/v1/forms/"+url.PathEscape(form)+":autofill",
		&v1.AutofillRequest{ApplicantId: *applicant}, &out); err != nil {
		return err
	}
	printFilledForm(stdout, &out)
	if r := out.GetReceipt(); r != nil {
		fmt.Fprintf(stdout, "\naudit receipt: node %s, entry %d\n", r.GetNode(), r.GetLeafIndex())
	}
	return nil
}

func printFormList(w io.Writer, l *v1.ListFormsResponse) {
	fmt.Fprintln(w, "Forms:")
	for _, f := range l.GetForms() {
		fmt.Fprintf(w, "  %-30s %s  (%s applicant, purpose %s)\n", f.GetId(), f.GetTitle(), f.GetApplicantKind(), f.GetPurpose())
	}
	fmt.Fprintln(w, "Bundles (use --bundle):")
	for _, b := range l.GetBundles() {
		fmt.Fprintf(w, "  %-30s %s  (%s applicant)\n", b.GetId(), b.GetTitle(), b.GetApplicantKind())
	}
}

func printBundle(w io.Writer, b *v1.AutofillBundleResponse) {
	fmt.Fprintf(w, "%s (%s)\n", b.GetTitle(), b.GetBundle())
	for _, f := range b.GetForms() {
		fmt.Fprintln(w)
		printFilledForm(w, f)
	}
	s := b.GetSummary()
	fmt.Fprintf(w, "\nBundle: %d/%d fields filled, %d/%d materials need not be handed in\n",
		s.GetFieldsFilled(), s.GetFieldsTotal(), s.GetMaterialsSatisfied(), s.GetMaterialsTotal())
	if r := b.GetReceipt(); r != nil {
		fmt.Fprintf(w, "audit receipt: node %s, entry %d\n", r.GetNode(), r.GetLeafIndex())
	}
}

// printFilledForm prints one filled form:
//
//	label: value  [department/dataset, live, masked, disputed]
//	label: (unfilled: REASON)
//	       what the reason means here (the response's unfilled_detail)
func printFilledForm(w io.Writer, f *v1.AutofillResponse) {
	fmt.Fprintf(w, "== %s (%s) ==\n", f.GetTitle(), f.GetForm())
	fmt.Fprintf(w, "purpose: %s   legal basis: %s\n\n", f.GetPurpose(), f.GetLegalBasis())
	width := 0
	for _, fd := range f.GetFields() {
		width = max(width, displayWidth(fd.GetLabel()))
	}
	for _, fd := range f.GetFields() {
		label := fd.GetLabel()
		mark := " "
		if fd.GetRequired() {
			mark = "*"
		}
		pad := strings.Repeat(" ", width-displayWidth(label))
		if fd.GetFilled() {
			var tags []string
			p := fd.GetProvenance()
			tags = append(tags, p.GetDepartment()+"/"+p.GetDataset(), deliveryWord(p.GetDelivery()))
			if fd.GetMasked() {
				tags = append(tags, "masked")
			}
			if fd.GetDisputed() {
				tags = append(tags, "disputed")
			}
			fmt.Fprintf(w, "%s %s%s : %s  [%s]\n", mark, label, pad, valueText(fd.GetValue()), strings.Join(tags, ", "))
			continue
		}
		line := fmt.Sprintf("%s %s%s : (unfilled: %s)", mark, label, pad, fd.GetUnfilledReason())
		if fd.GetDisputed() {
			line += "  [disputed]"
		}
		fmt.Fprintln(w, line)
		if d := fd.GetUnfilledDetail(); d != "" {
			fmt.Fprintf(w, "    %s   %s\n", strings.Repeat(" ", width), d)
		}
		for i, v := range fd.GetConflictingValues() {
			src := ""
			if i < len(fd.GetConflictingSources()) {
				p := fd.GetConflictingSources()[i]
				src = "  [" + p.GetDepartment() + "/" + p.GetDataset() + " " + p.GetRecordId() + "]"
			}
			fmt.Fprintf(w, "    %s   candidate: %s%s\n", strings.Repeat(" ", width), valueText(v), src)
		}
	}
	if len(f.GetMaterials()) > 0 {
		fmt.Fprintln(w, "\nMaterials:")
		for _, m := range f.GetMaterials() {
			if m.GetSatisfied() {
				p := m.GetProvenance()
				fmt.Fprintf(w, "  [x] %s — not needed: %s/%s record %s\n", m.GetName(), p.GetDepartment(), p.GetDataset(), p.GetRecordId())
			} else {
				fmt.Fprintf(w, "  [ ] %s — hand in (%s)\n", m.GetName(), m.GetReason())
				if d := m.GetDetail(); d != "" {
					fmt.Fprintf(w, "        %s\n", d)
				}
			}
		}
	}
	s := f.GetSummary()
	fmt.Fprintf(w, "\nSummary: %d/%d fields filled, %d/%d materials need not be handed in\n",
		s.GetFieldsFilled(), s.GetFieldsTotal(), s.GetMaterialsSatisfied(), s.GetMaterialsTotal())
}

func deliveryWord(d v1.Delivery) string {
	switch d {
	case v1.Delivery_DELIVERY_LIVE:
		return "live"
	case v1.Delivery_DELIVERY_CACHE:
		return "cache"
	case v1.Delivery_DELIVERY_STALE:
		return "stale"
	}
	return "unknown"
}

func valueText(v *structpb.Value) string {
	switch x := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(x.NumberValue, 'f', -1, 64)
	case *structpb.Value_StringValue:
		return x.StringValue
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	}
	return ""
}

// displayWidth counts East Asian wide characters as two columns.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x1100 && (r <= 0x115f || (r >= 0x2e80 && r <= 0xa4cf) || (r >= 0xac00 && r <= 0xd7a3) ||
			(r >= 0xf900 && r <= 0xfaff) || (r >= 0xfe30 && r <= 0xfe4f) || (r >= 0xff00 && r <= 0xff60) || (r >= 0xffe0 && r <= 0xffe6)) {
			n += 2
		} else {
			n++
		}
	}
	return n
}
