package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Service is the principal Roles Anywhere acts as in a role's trust policy.
const Service = "rolesanywhere.amazonaws.com"

// Actions CreateSession needs the trust policy to allow.
const (
	ActionAssumeRole        = "sts:AssumeRole"
	ActionTagSession        = "sts:TagSession"
	ActionSetSourceIdentity = "sts:SetSourceIdentity"
)

// Context keys Roles Anywhere sets (documented), and aws:SourceIp (chosen:
// the CreateSession client's address).
const (
	KeySourceArn      = "aws:SourceArn"
	KeySourceAccount  = "aws:SourceAccount"
	KeySourceIdentity = "sts:SourceIdentity"
	KeySourceIP       = "aws:SourceIp"
)

// ErrInvalidPolicy wraps why Parse refuses a policy document.
var ErrInvalidPolicy = errors.New("invalid trust policy")

// Policy is a parsed trust policy.
type Policy struct {
	Statements []Statement
}

// Statement is one parsed statement.
type Statement struct {
	Sid       string
	Effect    string // "Allow" or "Deny"
	principal []string
	anyPrinc  bool
	actions   []string
	notAction bool
	conds     []condition
}

type condition struct {
	op       string // as written, e.g. "ForAnyValue:StringLikeIfExists"
	base     string // "StringLike"
	set      string // "", "ForAnyValue", "ForAllValues"
	ifExists bool
	key      string
	values   []string
}

// operators maps a base operator to (negated, match function).
var operators = map[string]struct {
	negated bool
	match   func(policy, ctx string) bool
}{
	"StringEquals":              {false, func(p, c string) bool { return p == c }},
	"StringNotEquals":           {true, func(p, c string) bool { return p == c }},
	"StringEqualsIgnoreCase":    {false, strings.EqualFold},
	"StringNotEqualsIgnoreCase": {true, strings.EqualFold},
	"StringLike":                {false, globMatch},
	"StringNotLike":             {true, globMatch},
	"ArnEquals":                 {false, arnMatch},
	"ArnLike":                   {false, arnMatch},
	"ArnNotEquals":              {true, arnMatch},
	"ArnNotLike":                {true, arnMatch},
	"IpAddress":                 {false, ipMatch},
	"NotIpAddress":              {true, ipMatch},
	"Bool":                      {false, func(p, c string) bool { return strings.EqualFold(p, c) }},
}

// Parse reads a trust policy document. Operators other than those the
// package models are an error (wrapping ErrInvalidPolicy).
func Parse(doc []byte) (*Policy, error) {
	var raw struct {
		Version   string          `json:"Version"`
		Statement json.RawMessage `json:"Statement"`
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	var stmts []json.RawMessage
	if err := json.Unmarshal(raw.Statement, &stmts); err != nil {
		stmts = []json.RawMessage{raw.Statement} // a single statement object
	}
	if len(stmts) == 0 || len(raw.Statement) == 0 {
		return nil, fmt.Errorf("%w: no Statement", ErrInvalidPolicy)
	}
	p := &Policy{}
	for i, s := range stmts {
		st, err := parseStatement(s)
		if err != nil {
			return nil, fmt.Errorf("%w: statement %d: %v", ErrInvalidPolicy, i+1, err)
		}
		if st.Sid == "" {
			st.Sid = fmt.Sprintf("#%d", i+1)
		}
		p.Statements = append(p.Statements, st)
	}
	return p, nil
}

func parseStatement(b json.RawMessage) (Statement, error) {
	var raw struct {
		Sid       string                                `json:"Sid"`
		Effect    string                                `json:"Effect"`
		Principal json.RawMessage                       `json:"Principal"`
		Action    json.RawMessage                       `json:"Action"`
		NotAction json.RawMessage                       `json:"NotAction"`
		Condition map[string]map[string]json.RawMessage `json:"Condition"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return Statement{}, err
	}
	st := Statement{Sid: raw.Sid, Effect: raw.Effect}
	if st.Effect != "Allow" && st.Effect != "Deny" {
		return st, fmt.Errorf("field Effect %q (want Allow or Deny)", raw.Effect)
	}
	// Principal: "*", {"Service": "x" | [...]}, {"AWS": "*"}.
	var ps string
	if err := json.Unmarshal(raw.Principal, &ps); err == nil {
		st.anyPrinc = ps == "*"
		if !st.anyPrinc {
			return st, fmt.Errorf("field Principal %q", ps)
		}
	} else if len(raw.Principal) > 0 {
		var pm map[string]json.RawMessage
		if err := json.Unmarshal(raw.Principal, &pm); err != nil {
			return st, fmt.Errorf("field Principal: %v", err)
		}
		for k, v := range pm {
			vals, err := stringList(v)
			if err != nil {
				return st, fmt.Errorf("field Principal %s: %v", k, err)
			}
			if k == "Service" {
				st.principal = append(st.principal, vals...)
			} else if k == "AWS" && slices.Contains(vals, "*") {
				st.anyPrinc = true
			}
		}
	}
	switch {
	case len(raw.Action) > 0:
		a, err := stringList(raw.Action)
		if err != nil {
			return st, fmt.Errorf("field Action: %v", err)
		}
		st.actions = a
	case len(raw.NotAction) > 0:
		a, err := stringList(raw.NotAction)
		if err != nil {
			return st, fmt.Errorf("field NotAction: %v", err)
		}
		st.actions, st.notAction = a, true
	default:
		return st, errors.New("no Action")
	}
	ops := make([]string, 0, len(raw.Condition))
	for op := range raw.Condition {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		c := condition{op: op, base: op}
		if s, rest, ok := strings.Cut(op, ":"); ok {
			if s != "ForAnyValue" && s != "ForAllValues" {
				return st, fmt.Errorf("condition operator %q: unknown set qualifier %q", op, s)
			}
			c.set, c.base = s, rest
		}
		if strings.HasSuffix(c.base, "IfExists") {
			c.base, c.ifExists = strings.TrimSuffix(c.base, "IfExists"), true
		}
		if _, ok := operators[c.base]; !ok && c.base != "Null" {
			return st, fmt.Errorf("condition operator %q is not one trust policies use here (String*, Arn*, IpAddress, NotIpAddress, Bool, Null)", op)
		}
		if c.base == "Null" && (c.ifExists || c.set != "") {
			return st, fmt.Errorf("condition operator %q: Null takes no IfExists or set qualifier", op)
		}
		keys := make([]string, 0, len(raw.Condition[op]))
		for k := range raw.Condition[op] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			vals, err := stringList(raw.Condition[op][k])
			if err != nil {
				return st, fmt.Errorf("condition %s %s: %v", op, k, err)
			}
			if c.base == "IpAddress" || c.base == "NotIpAddress" {
				for _, v := range vals {
					if _, err := parsePrefix(v); err != nil {
						return st, fmt.Errorf("condition %s %s: %q is not an IP address or CIDR", op, k, v)
					}
				}
			}
			cc := c
			cc.key, cc.values = k, vals
			st.conds = append(st.conds, cc)
		}
	}
	return st, nil
}

// stringList reads a JSON string, bool, number or array of them.
func stringList(b json.RawMessage) ([]string, error) {
	var one any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&one); err != nil {
		return nil, err
	}
	conv := func(v any) (string, error) {
		switch x := v.(type) {
		case string:
			return x, nil
		case bool:
			return fmt.Sprint(x), nil
		case json.Number:
			return x.String(), nil
		}
		return "", fmt.Errorf("value %v is not a string", v)
	}
	if arr, ok := one.([]any); ok {
		out := make([]string, 0, len(arr))
		for _, v := range arr {
			s, err := conv(v)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := conv(one)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// Request is what a CreateSession puts before the trust policy.
type Request struct {
	// Tags are the session tags (SessionTags), keyed without
	// PrincipalTagPrefix.
	Tags map[string]string
	// SourceArn is the trust anchor's ARN; SourceAccount its account.
	SourceArn, SourceAccount string
	// SourceIdentity is "CN=…", "ID=…" or "" (none set).
	SourceIdentity string
	// SourceIP is the client's address (invalid: unknown, key absent).
	SourceIP netip.Addr
}

// Context returns the request's condition keys, lower-cased (IAM condition
// keys are case-insensitive), each with its values.
func (r Request) Context() map[string][]string {
	ctx := map[string][]string{}
	for k, v := range r.Tags {
		ctx[strings.ToLower(PrincipalTagPrefix+k)] = []string{v}
	}
	if r.SourceArn != "" {
		ctx[strings.ToLower(KeySourceArn)] = []string{r.SourceArn}
	}
	if r.SourceAccount != "" {
		ctx[strings.ToLower(KeySourceAccount)] = []string{r.SourceAccount}
	}
	if r.SourceIdentity != "" {
		ctx[strings.ToLower(KeySourceIdentity)] = []string{r.SourceIdentity}
	}
	if r.SourceIP.IsValid() {
		ctx[strings.ToLower(KeySourceIP)] = []string{r.SourceIP.String()}
	}
	return ctx
}

// Actions returns the actions the request needs allowed.
func (r Request) Actions() []string {
	a := []string{ActionAssumeRole, ActionTagSession}
	if r.SourceIdentity != "" {
		a = append(a, ActionSetSourceIdentity)
	}
	return a
}

// ConditionResult is one condition's outcome.
type ConditionResult struct {
	// Operator, Key and Values as written in the policy.
	Operator, Key string
	Values        []string
	// Got are the request's values of Key (nil: absent).
	Got []string
	// OK: the condition holds.
	OK bool
}

func (c ConditionResult) String() string {
	got := "absent"
	if c.Got != nil {
		got = fmt.Sprintf("%q", c.Got)
	}
	mark := "no "
	if c.OK {
		mark = "yes"
	}
	return fmt.Sprintf("%s %s %s %q (request: %s)", mark, c.Operator, c.Key, c.Values, got)
}

// StatementResult is one statement's outcome for one action.
type StatementResult struct {
	Sid, Effect string
	// Action is the action evaluated.
	Action string
	// PrincipalOK and ActionOK: the statement names Roles Anywhere and the
	// action.
	PrincipalOK, ActionOK bool
	// Conditions, in the policy's (sorted) order.
	Conditions []ConditionResult
	// Applies: principal, action and every condition match.
	Applies bool
}

// Why is a one-line reason the statement does not apply ("" if it does).
func (s StatementResult) Why() string {
	switch {
	case s.Applies:
		return ""
	case !s.PrincipalOK:
		return "principal is not " + Service
	case !s.ActionOK:
		return "does not cover " + s.Action
	}
	for _, c := range s.Conditions {
		if !c.OK {
			got := "absent"
			if c.Got != nil {
				got = strings.Join(c.Got, ",")
			}
			return fmt.Sprintf("%s %s %s does not hold (request has %s)", c.Operator, c.Key, strings.Join(c.Values, ","), got)
		}
	}
	return ""
}

// Decision is the trust policy's verdict.
type Decision struct {
	// Allowed: every needed action is allowed and none denied.
	Allowed bool
	// Reason explains the verdict in one line (the same text the
	// emulator puts in its refusal).
	Reason string
	// Results: every statement for every needed action.
	Results []StatementResult
}

// Evaluate decides whether the role's trust policy p lets Roles Anywhere
// assume the role for r.
func Evaluate(p *Policy, r Request) Decision {
	ctx := r.Context()
	d := Decision{Allowed: true}
	var denied []string
	// Actions no statement allows, grouped by the closest statement's
	// reason, so that one failing condition is said once.
	var missingWhy []string
	missing := map[string][]string{}
	for _, action := range r.Actions() {
		allowedBy := ""
		closest := ""
		for _, st := range p.Statements {
			res := st.evaluate(action, ctx)
			d.Results = append(d.Results, res)
			switch {
			case res.Applies && st.Effect == "Deny":
				denied = append(denied, fmt.Sprintf("statement %s explicitly denies %s", st.Sid, action))
			case res.Applies:
				allowedBy = st.Sid
			case st.Effect == "Allow" && res.PrincipalOK && res.ActionOK && closest == "":
				closest = fmt.Sprintf("statement %s: %s", st.Sid, res.Why())
			}
		}
		if allowedBy == "" {
			if _, ok := missing[closest]; !ok {
				missingWhy = append(missingWhy, closest)
			}
			missing[closest] = append(missing[closest], action)
		}
	}
	switch {
	case len(denied) > 0:
		d.Allowed, d.Reason = false, "trust policy: "+strings.Join(denied, "; ")
	case len(missing) > 0:
		var parts []string
		for _, why := range missingWhy {
			m := "no statement allows " + strings.Join(missing[why], ", ")
			if why != "" {
				m += " (" + why + ")"
			}
			parts = append(parts, m)
		}
		d.Allowed, d.Reason = false, "trust policy: "+strings.Join(parts, "; ")
	default:
		d.Reason = "trust policy allows " + strings.Join(r.Actions(), ", ")
	}
	return d
}

func (st Statement) evaluate(action string, ctx map[string][]string) StatementResult {
	res := StatementResult{Sid: st.Sid, Effect: st.Effect, Action: action}
	res.PrincipalOK = st.anyPrinc || slices.ContainsFunc(st.principal, func(p string) bool { return globMatchFold(p, Service) })
	matched := slices.ContainsFunc(st.actions, func(a string) bool { return globMatchFold(a, action) })
	res.ActionOK = matched != st.notAction
	all := true
	for _, c := range st.conds {
		got, present := ctx[strings.ToLower(c.key)]
		ok := c.holds(got, present)
		cr := ConditionResult{Operator: c.op, Key: c.key, Values: c.values, OK: ok}
		if present {
			cr.Got = got
		}
		res.Conditions = append(res.Conditions, cr)
		all = all && ok
	}
	res.Applies = res.PrincipalOK && res.ActionOK && all
	return res
}

// holds applies the operator to the request's values of the key.
func (c condition) holds(got []string, present bool) bool {
	if c.base == "Null" {
		want := strings.EqualFold(firstOr(c.values, "true"), "true")
		return want == !present
	}
	op := operators[c.base]
	one := func(v string) bool { // the base operator on one request value
		m := slices.ContainsFunc(c.values, func(p string) bool { return op.match(p, v) })
		return m != op.negated // negated: NOR over policy values
	}
	if !present || len(got) == 0 {
		switch {
		case c.set == "ForAllValues":
			return true
		case c.set == "ForAnyValue":
			return false
		case c.ifExists:
			return true
		default:
			return op.negated
		}
	}
	switch c.set {
	case "ForAllValues":
		for _, v := range got {
			if !one(v) {
				return false
			}
		}
		return true
	default: // ForAnyValue, or a single-valued key
		return slices.ContainsFunc(got, one)
	}
}

func firstOr(v []string, d string) string {
	if len(v) == 0 {
		return d
	}
	return v[0]
}

// globMatch matches IAM's "*" (any run) and "?" (one character),
// case-sensitively.
func globMatch(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func globMatchFold(pattern, s string) bool {
	return globMatch(strings.ToLower(pattern), strings.ToLower(s))
}

// arnMatch matches an ARN pattern component by component (six
// colon-separated parts, the last keeping its colons), wildcards allowed
// in each.
func arnMatch(pattern, s string) bool {
	pp, sp := strings.SplitN(pattern, ":", 6), strings.SplitN(s, ":", 6)
	if len(pp) != 6 || len(sp) != 6 {
		return false
	}
	for i := range pp {
		if !globMatch(pp[i], sp[i]) {
			return false
		}
	}
	return true
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func ipMatch(policy, ctx string) bool {
	p, err := parsePrefix(policy)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(ctx)
	if err != nil {
		return false
	}
	return p.Contains(a.Unmap())
}
