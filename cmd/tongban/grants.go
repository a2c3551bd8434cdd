package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

const grantsUsage = `Usage: tongban grants COMMAND [flags]

Commands (each talks to a running gateway's REST API with --url and --token):
  propose   propose a grant (role admin)
  review    approve or reject a proposed grant (an admin other than the
            proposer for normal datasets, a legal_reviewer other than the
            proposer for major ones)
  revoke    revoke a grant at once (role admin)
  list      list grants
  show      show one grant with its history
`

func cmdGrants(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		fmt.Fprint(stderr, grantsUsage)
		if len(args) == 0 {
			return usagef("missing command")
		}
		return nil
	}
	switch args[0] {
	case "propose":
		return grantsPropose(ctx, args[1:], stdout, stderr)
	case "review":
		return grantsReview(ctx, args[1:], stdout, stderr)
	case "revoke":
		return grantsRevoke(ctx, args[1:], stdout, stderr)
	case "list":
		return grantsList(ctx, args[1:], stdout, stderr)
	case "show":
		return grantsShow(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, grantsUsage)
	return usagef("unknown grants command %q", args[0])
}

// listFlag collects a comma-separated or repeated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func grantsPropose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grants propose", "grants propose --dataset D --system S --fields F,... --purpose P --legal-basis TEXT [flags]", stderr)
	client := clientFlags(fs)
	var fields, purposes, masks listFlag
	dataset := fs.String("dataset", "", "dataset, e.g. market.enterprises")
	system := fs.String("system", "", "consumer system id")
	department := fs.String("department", "", "consumer department (with --role, instead of --system)")
	role := fs.String("role", "", "consumer role within --department")
	fs.Var(&fields, "fields", "granted fields (comma-separated or repeated)")
	fs.Var(&purposes, "purpose", "covered purposes (comma-separated or repeated)")
	fs.Var(&masks, "mask", "FIELD=KIND masks, KIND one of resident_id, phone, name, address, redact")
	basis := fs.String("legal-basis", "", "law or regulation and article the grant relies on")
	jurisdiction := fs.String("jurisdiction", "", "region-code prefix, e.g. 1301")
	validFor := fs.Duration("valid-for", 365*24*time.Hour, "validity from now")
	perMinute := fs.Int("per-minute", 0, "quota: requests per minute (0 = none)")
	perDay := fs.Int("per-day", 0, "quota: requests per day (0 = none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Now()
	g := &v1.Grant{
		Consumer:     &v1.Consumer{SystemId: *system, Department: *department, Role: *role},
		Dataset:      *dataset,
		Fields:       fields,
		Purposes:     purposes,
		LegalBasis:   *basis,
		Jurisdiction: *jurisdiction,
		ValidFrom:    timestamppb.New(now),
		ValidUntil:   timestamppb.New(now.Add(*validFor)),
		Quota:        &v1.Quota{PerMinute: int32(*perMinute), PerDay: int32(*perDay)},
	}
	for _, m := range masks {
		field, kind, ok := strings.Cut(m, "=")
		mk, known := v1.MaskKind_value["MASK_KIND_"+strings.ToUpper(kind)]
		if !ok || !known {
			return usagef("--mask %q: want FIELD=KIND with KIND one of resident_id, phone, name, address, redact", m)
		}
		g.Masks = append(g.Masks, &v1.FieldMask{Field: field, Mask: v1.MaskKind(mk)})
	}
	var out v1.Grant
	if err := client().call(ctx, "POST", "/v1/grants", g, &out); err != nil {
		return err
	}
	printGrant(stdout, &out)
	return nil
}

func grantsReview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grants review", "grants review ID (--approve | --reject) --opinion TEXT", stderr)
	client := clientFlags(fs)
	approve := fs.Bool("approve", false, "approve the grant")
	reject := fs.Bool("reject", false, "reject the grant")
	opinion := fs.String("opinion", "", "written opinion (required for major datasets and rejections)")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	if *approve == *reject {
		return usagef("give exactly one of --approve and --reject")
	}
	decision := v1.ReviewDecision_REVIEW_DECISION_APPROVE
	if *reject {
		decision = v1.ReviewDecision_REVIEW_DECISION_REJECT
	}
	var out v1.Grant
	if err := client().call(ctx, "POST", "/v1/grants/"+url.PathEscape(id)+":review",
		&v1.ReviewGrantRequest{Id: id, Decision: decision, Opinion: *opinion}, &out); err != nil {
		return err
	}
	printGrant(stdout, &out)
	return nil
}

func grantsRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grants revoke", "grants revoke ID --reason TEXT", stderr)
	client := clientFlags(fs)
	reason := fs.String("reason", "", "why the grant is revoked")
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	var out v1.Grant
	if err := client().call(ctx, "POST", "/v1/grants/"+url.PathEscape(id)+":revoke",
		&v1.RevokeGrantRequest{Id: id, Reason: *reason}, &out); err != nil {
		return err
	}
	printGrant(stdout, &out)
	return nil
}

func grantsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grants list", "grants list [--state S] [--dataset D]", stderr)
	client := clientFlags(fs)
	state := fs.String("state", "", "proposed, active, rejected, revoked or expired")
	dataset := fs.String("dataset", "", "only grants on this dataset")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := url.Values{}
	if *state != "" {
		st, ok := v1.GrantState_value["GRANT_STATE_"+strings.ToUpper(*state)]
		if !ok {
			return usagef("--state %q: want proposed, active, rejected, revoked or expired", *state)
		}
		q.Set("state", v1.GrantState(st).String())
	}
	if *dataset != "" {
		q.Set("dataset", *dataset)
	}
	var out v1.ListGrantsResponse
	path := "/v1/grants"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if err := client().call(ctx, "GET", path, nil, &out); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tCONSUMER\tDATASET\tPURPOSES\tVALID UNTIL")
	for _, g := range out.Grants {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.GetId(), stateName(g.GetState()), consumerLabel(g.GetConsumer()),
			g.GetDataset(), strings.Join(g.GetPurposes(), ","), g.GetValidUntil().AsTime().Format(time.DateOnly))
	}
	return tw.Flush()
}

func grantsShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("grants show", "grants show ID", stderr)
	client := clientFlags(fs)
	id, err := parseWithID(fs, args)
	if err != nil {
		return err
	}
	var out v1.Grant
	if err := client().call(ctx, "GET", "/v1/grants/"+url.PathEscape(id), nil, &out); err != nil {
		return err
	}
	printGrant(stdout, &out)
	return nil
}

// parseWithID parses flags that may come before or after one positional ID.
func parseWithID(fs *flag.FlagSet, args []string) (string, error) {
	id, err := parseOnePositional(fs, args, "grant ID")
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", usagef("missing grant ID")
	}
	return id, nil
}

// parseOnePositional parses flags that may come before or after at most one
// positional argument (named what in errors) and returns it, or "".
func parseOnePositional(fs *flag.FlagSet, args []string, what string) (string, error) {
	var arg string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arg, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if arg == "" && fs.NArg() > 0 {
		// The flag package stops at the argument: parse the flags after it too.
		arg = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return "", err
		}
	}
	if rest := fs.Args(); len(rest) > 0 {
		return "", usagef("unexpected arguments after %s %s: %q", what, arg, rest)
	}
	return arg, nil
}

func stateName(s v1.GrantState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "GRANT_STATE_"))
}

func consumerLabel(c *v1.Consumer) string {
	if c.GetSystemId() != "" {
		return c.GetSystemId()
	}
	if c.GetRole() != "" {
		return c.GetDepartment() + "/" + c.GetRole()
	}
	return c.GetDepartment()
}

func printGrant(w io.Writer, g *v1.Grant) {
	fmt.Fprintf(w, "grant %s  [%s]\n", g.GetId(), stateName(g.GetState()))
	fmt.Fprintf(w, "  consumer:      %s\n", consumerLabel(g.GetConsumer()))
	fmt.Fprintf(w, "  dataset:       %s\n", g.GetDataset())
	fmt.Fprintf(w, "  fields:        %s\n", strings.Join(g.GetFields(), ", "))
	for _, m := range g.GetMasks() {
		fmt.Fprintf(w, "  mask:          %s = %s\n", m.GetField(), strings.ToLower(strings.TrimPrefix(m.GetMask().String(), "MASK_KIND_")))
	}
	fmt.Fprintf(w, "  purposes:      %s\n", strings.Join(g.GetPurposes(), ", "))
	fmt.Fprintf(w, "  legal basis:   %s\n", g.GetLegalBasis())
	if g.GetJurisdiction() != "" {
		fmt.Fprintf(w, "  jurisdiction:  %s\n", g.GetJurisdiction())
	}
	fmt.Fprintf(w, "  valid:         %s .. %s\n", g.GetValidFrom().AsTime().Format(time.DateOnly), g.GetValidUntil().AsTime().Format(time.DateOnly))
	if g.GetNeedsLegalReview() {
		fmt.Fprintf(w, "  legal review:  required (major dataset)\n")
	}
	fmt.Fprintf(w, "  proposed by:   %s\n", g.GetProposedBy())
	for _, t := range g.GetHistory() {
		fmt.Fprintf(w, "  %s  %s → %s by %s (%s)", t.GetAt().AsTime().Format(time.RFC3339), stateName(t.GetFrom()), stateName(t.GetTo()), t.GetActor(), t.GetActorRole())
		if t.GetOpinion() != "" {
			fmt.Fprintf(w, ": %s", t.GetOpinion())
		}
		fmt.Fprintln(w)
	}
}
