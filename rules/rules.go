package rules

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Filter selects callbacks: by command glob, by SdkAppid, then by expression. Empty parts
// match everything, so a Filter{} matches every callback.
type Filter struct {
	Commands []string // globs ("Group.*") or exact names
	Apps     []string // SdkAppids
	When     string   // a boolean expr expression
}

// RouteSpec is a route as configured.
type RouteSpec struct {
	Name string
	Filter
	To   []string // destination names
	Stop bool     // do not evaluate later routes when this one matches
}

// RespondSpec is a respond rule as configured. Only its filter is evaluated here; the
// rest travels with the match to whoever answers.
type RespondSpec struct {
	Filter
	From string // the destination that answers
}

// CompileError is a problem with one expression or glob of a spec, located by the spec's
// kind ("route", "respond" or "body"), index, and field ("commands", "when", "body").
// Line and Column are 1-based inside the expression, 0 when unknown.
type CompileError struct {
	Kind   string
	Index  int
	Field  string
	Line   int
	Column int
	Err    error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%s %d: %s: %v", e.Kind, e.Index, e.Field, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// filter is a compiled Filter.
type filter struct {
	exact    map[string]bool // command names without glob characters
	globs    []string
	apps     map[string]bool
	program  *vm.Program // nil: no expression
	needText bool
}

type route struct {
	RouteSpec
	filter
}

type respond struct {
	spec  RespondSpec
	index int
	filter
}

// Set is a compiled, immutable set of routes and respond rules: safe for concurrent use.
type Set struct {
	routes   []route
	responds []respond
}

// Delivery is one destination a callback goes to, with the matched routes naming it.
type Delivery struct {
	Destination string
	Routes      []string
}

// Match is the outcome of evaluating a Set against an event.
type Match struct {
	Routes []string // matched route names, in config order
	// Deliveries are the asynchronous copies: one per destination, in order of first
	// mention, without the destination of the matched respond rule.
	Deliveries []Delivery
	// Respond is the first matching respond rule (nil when none); RespondIndex its index.
	Respond      *RespondSpec
	RespondIndex int
}

// ErrorHook is told about expressions that failed at run time; such a rule does not match.
type ErrorHook func(kind, name string, err error)

// Compile compiles routes and respond rules. Every problem is returned, in spec order; the
// Set is nil when there is any.
func Compile(routes []RouteSpec, responds []RespondSpec) (*Set, []*CompileError) {
	s := &Set{}
	var errs []*CompileError
	for i, r := range routes {
		f, fe := compileFilter(r.Filter)
		for _, e := range fe {
			e.Kind, e.Index = "route", i
		}
		errs = append(errs, fe...)
		s.routes = append(s.routes, route{RouteSpec: r, filter: f})
	}
	for i, r := range responds {
		f, fe := compileFilter(r.Filter)
		for _, e := range fe {
			e.Kind, e.Index = "respond", i
		}
		errs = append(errs, fe...)
		s.responds = append(s.responds, respond{spec: r, index: i, filter: f})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

func compileFilter(f Filter) (filter, []*CompileError) {
	var errs []*CompileError
	c := filter{}
	for _, g := range f.Commands {
		if !strings.ContainsAny(g, `*?[\`) {
			if c.exact == nil {
				c.exact = map[string]bool{}
			}
			c.exact[g] = true
			continue
		}
		if _, err := path.Match(g, ""); err != nil {
			errs = append(errs, &CompileError{Field: "commands", Err: fmt.Errorf("bad glob %q: %w", g, err)})
			continue
		}
		c.globs = append(c.globs, g)
	}
	for _, a := range f.Apps {
		if c.apps == nil {
			c.apps = map[string]bool{}
		}
		c.apps[a] = true
	}
	if strings.TrimSpace(f.When) != "" {
		p, err := compileExpr(f.When, expr.AsBool())
		if err == nil {
			err = notCondition(f.When)
		}
		if err != nil {
			errs = append(errs, exprError("when", err))
		} else {
			c.program = p
			ids, _ := ParseIdentifiers(f.When)
			c.needText = slices.Contains(ids, "text")
		}
	}
	return c, errs
}

// notCondition rejects a when that only reads a value (From_Account, Info.Action,
// MsgBody[0]). expr.AsBool lets such an expression compile, because a body field's type
// is unknown until run time; but Tencent's bodies carry no boolean fields (flags are 0/1),
// so it would fail on every callback. The error points at the value.
func notCondition(src string) error {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil // compileExpr has reported it
	}
	n := tree.Node
	for {
		switch t := n.(type) {
		case *ast.MemberNode:
			n = t.Node
			continue
		case *ast.ChainNode:
			n = t.Node
			continue
		case *ast.IdentifierNode:
		default:
			return nil
		}
		break
	}
	value := strings.TrimSpace(src)
	e := &file.Error{Location: n.Location(), Message: fmt.Sprintf(
		"expected bool, but %s is a value, not a condition: compare it (e.g. %s != nil)", value, value)}
	return e.Bind(tree.Source)
}

// compileEnv declares query and text; body fields stay undeclared, so they are nil when a
// callback lacks them.
var compileEnv = map[string]any{"query": map[string]string{}, "text": ""}

func compileExpr(src string, opts ...expr.Option) (*vm.Program, error) {
	opts = append([]expr.Option{expr.Env(compileEnv), expr.AllowUndefinedVariables()}, opts...)
	p, err := expr.Compile(src, opts...)
	if err == nil {
		err = unknownFunction(src)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// unknownFunction rejects a call of a name that is neither a builtin nor declared
// (lowercase(From_Account)). AllowUndefinedVariables, which body fields need, lets expr
// compile it as a call of a variable, which then fails on every callback.
func unknownFunction(src string) error {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil // compiled, so it parses
	}
	v := &callVisitor{}
	ast.Walk(&tree.Node, v)
	if v.first == nil {
		return nil
	}
	msg := "unknown function " + v.first.Value
	if s, ok := Suggest(v.first.Value, builtin.Names); ok {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return (&file.Error{Location: v.first.Location(), Message: msg}).Bind(tree.Source)
}

// callVisitor finds the first call, in source order, of an undeclared name.
type callVisitor struct{ first *ast.IdentifierNode }

func (v *callVisitor) Visit(n *ast.Node) {
	c, ok := (*n).(*ast.CallNode)
	if !ok {
		return
	}
	id, ok := c.Callee.(*ast.IdentifierNode)
	if !ok || compileEnv[id.Value] != nil {
		return
	}
	if v.first == nil || id.Location().From < v.first.Location().From {
		v.first = id
	}
}

func exprError(field string, err error) *CompileError {
	ce := &CompileError{Field: field, Err: err}
	var fe *file.Error
	if errors.As(err, &fe) {
		ce.Line, ce.Column = fe.Line, fe.Column+1
		ce.Err = errors.New(fe.Message)
	}
	return ce
}

var vms = sync.Pool{New: func() any { return new(vm.VM) }}

// eval runs the filter on ev: the cheap command and app checks first.
func (f *filter) eval(ev *Event) (bool, error) {
	if f.exact != nil || f.globs != nil {
		if !f.exact[ev.Command] && !matchGlob(f.globs, ev.Command) {
			return false, nil
		}
	}
	if f.apps != nil && !f.apps[ev.AppID] {
		return false, nil
	}
	if f.program == nil {
		return true, nil
	}
	m := vms.Get().(*vm.VM)
	out, err := m.Run(f.program, ev.environment(f.needText))
	vms.Put(m)
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

func matchGlob(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// Match evaluates every route (until one with Stop matches) and the respond rules. A
// destination named by several matching routes appears once, with all their names. A
// rule whose expression fails at run time does not match and is reported to hook.
func (s *Set) Match(ev *Event, hook ErrorHook) Match {
	var m Match
	for i := range s.routes {
		r := &s.routes[i]
		ok, err := r.eval(ev)
		if err != nil {
			if hook != nil {
				hook("route", r.Name, err)
			}
			continue
		}
		if !ok {
			continue
		}
		m.Routes = append(m.Routes, r.Name)
		for _, to := range r.To {
			m.add(to, r.Name)
		}
		if r.Stop {
			break
		}
	}
	for i := range s.responds {
		r := &s.responds[i]
		ok, err := r.eval(ev)
		if err != nil {
			if hook != nil {
				hook("respond", fmt.Sprintf("respond[%d]", r.index), err)
			}
			continue
		}
		if ok {
			m.Respond, m.RespondIndex = &r.spec, r.index
			break
		}
	}
	if m.Respond != nil {
		// The answering destination gets the callback synchronously; not a second copy.
		m.Deliveries = slices.DeleteFunc(m.Deliveries, func(d Delivery) bool { return d.Destination == m.Respond.From })
	}
	return m
}

func (m *Match) add(dest, route string) {
	for i := range m.Deliveries {
		if m.Deliveries[i].Destination == dest {
			if !slices.Contains(m.Deliveries[i].Routes, route) {
				m.Deliveries[i].Routes = append(m.Deliveries[i].Routes, route)
			}
			return
		}
	}
	m.Deliveries = append(m.Deliveries, Delivery{Destination: dest, Routes: []string{route}})
}

// Identifiers returns the free variables an expression reads (body fields, query, text),
// sorted and without duplicates: not let-bound names, not predicate fields (.Text), not
// member names (query.SdkAppid yields only query).
func Identifiers(node ast.Node) []string {
	v := &identVisitor{bound: map[string]bool{}}
	ast.Walk(&node, v)
	names := slices.DeleteFunc(v.names, func(n string) bool { return v.bound[n] })
	slices.Sort(names)
	return slices.Compact(names)
}

type identVisitor struct {
	bound    map[string]bool
	names    []string
	nodes    []*ast.IdentifierNode // as names, for their positions
	binaries []*ast.BinaryNode     // for the linter's comparisons
}

func (v *identVisitor) Visit(n *ast.Node) {
	switch t := (*n).(type) {
	case *ast.VariableDeclaratorNode:
		v.bound[t.Name] = true
	case *ast.IdentifierNode:
		v.names = append(v.names, t.Value)
		v.nodes = append(v.nodes, t)
	case *ast.BinaryNode:
		v.binaries = append(v.binaries, t)
	}
}

// ParseIdentifiers parses src and returns the Identifiers of its syntax tree (before the
// compiler's optimisations can fold any away).
func ParseIdentifiers(src string) ([]string, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, err
	}
	return Identifiers(tree.Node), nil
}
