package rules

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"

	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// Finding is a lint finding, located like a CompileError (Kind, Index, Field; Kind "body"
// uses Index of the transform). Inside an expression, Line and Column (1-based) point at
// the field the finding is about; they are 0 when it is about the whole value. Entry is the
// index in Commands of the entry a "commands" finding is about.
//
// Error marks a rule that certainly misroutes (a field none of its commands carries, a
// comparison that cannot hold, a command Tencent does not have): check refuses it.
// Otherwise the finding is a warning: the config works, but probably not as meant.
type Finding struct {
	Kind    string
	Index   int
	Field   string
	Entry   int
	Line    int
	Column  int
	Message string
	Error   bool
}

// Lint checks routes and respond rules against what Tencent's callbacks carry.
//
// Errors: an exact command name that Tencent does not have and that extraCommands does
// not list; on a route whose commands are all exact, known names, a field none of them
// carries (always nil, and nil != 0 is true); a comparison of a field with a literal of
// another JSON type (SendMsgResult != "0" is always true).
//
// Warnings: a glob that selects no known command, an unknown field elsewhere (with a "did
// you mean"), a field that the commands a glob selects cannot carry, and a field only some
// callbacks carry on a route with no commands.
func Lint(routes []RouteSpec, responds []RespondSpec, extraCommands []string) []Finding {
	l := linter{extra: extraCommands}
	var out []Finding
	for i, r := range routes {
		for _, f := range l.filter(r.Filter) {
			f.Kind, f.Index = "route", i
			out = append(out, f)
		}
	}
	for i, r := range responds {
		for _, f := range l.filter(r.Filter) {
			f.Kind, f.Index = "respond", i
			out = append(out, f)
		}
	}
	return out
}

// LintBody checks a body transform for fields no callback carries.
func LintBody(src string) []Finding {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	var out []Finding
	for _, u := range fieldUses(tree) {
		if msg := unknownField(u.name); msg != "" {
			out = append(out, Finding{Kind: "body", Field: "body", Line: u.line, Column: u.column, Message: msg})
		}
	}
	return out
}

type linter struct {
	extra []string // tencent.extra_commands
}

// selection is what a filter's commands select: the known commands (and extra ones, whose
// fields are unknown) and whether every entry is an exact known name, so that the
// commands' fields are all the route can see.
type selection struct {
	commands []tencentim.CommandInfo
	exact    bool
}

func (l linter) filter(f Filter) []Finding {
	sel, out := l.commands(f.Commands)
	if strings.TrimSpace(f.When) == "" {
		return out
	}
	tree, err := parser.Parse(f.When)
	if err != nil {
		return out // Compile reports it
	}
	for _, u := range fieldUses(tree) {
		if msg, isErr := fieldFinding(u.name, f, sel); msg != "" {
			out = append(out, Finding{Field: "when", Line: u.line, Column: u.column, Message: msg, Error: isErr})
		}
	}
	for _, c := range comparisons(tree) {
		if msg := c.check(kindOn(c.field.name, f, sel)); msg != "" {
			out = append(out, Finding{Field: "when", Line: c.field.line, Column: c.field.column, Message: msg, Error: true})
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		if a.Field != b.Field {
			return strings.Compare(a.Field, b.Field) // commands before when
		}
		return cmpPos(a, b)
	})
	return out
}

func cmpPos(a, b Finding) int {
	if a.Line != b.Line {
		return a.Line - b.Line
	}
	return a.Column - b.Column
}

// commands resolves the entries of a filter's commands and reports those that name no
// command.
func (l linter) commands(entries []string) (selection, []Finding) {
	sel := selection{exact: len(entries) > 0}
	var out []Finding
	for i, g := range entries {
		if !isGlob(g) {
			if c, ok := tencentim.LookupCommand(g); ok {
				sel.commands = append(sel.commands, c)
				sel.exact = sel.exact && c.Fields != nil
				continue
			}
			sel.exact = false
			if slices.Contains(l.extra, g) {
				sel.commands = append(sel.commands, tencentim.CommandInfo{Name: g}) // fields unknown
				continue
			}
			msg := fmt.Sprintf("unknown command %q", g)
			if s, ok := Suggest(g, commandNames()); ok {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			msg += ": no callback has it, so this entry selects nothing; if Tencent IM added it, list it in tencent.extra_commands"
			out = append(out, Finding{Field: "commands", Entry: i, Message: msg, Error: true})
			continue
		}
		sel.exact = false
		n := 0
		for _, c := range tencentim.Commands() {
			if ok, _ := path.Match(g, c.Name); ok {
				sel.commands = append(sel.commands, c)
				n++
			}
		}
		for _, name := range l.extra {
			if ok, _ := path.Match(g, name); ok {
				sel.commands = append(sel.commands, tencentim.CommandInfo{Name: name})
				n++
			}
		}
		if n == 0 {
			out = append(out, Finding{Field: "commands", Entry: i, Message: fmt.Sprintf("%q matches no known command", g)})
		}
	}
	return sel, out
}

// isGlob reports whether a commands entry is a pattern, as Compile reads it.
func isGlob(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// fieldFinding says what is wrong with a rule reading field id, and whether it is an error.
func fieldFinding(id string, f Filter, sel selection) (string, bool) {
	if id == "query" || id == "text" {
		return "", false
	}
	if sel.exact && !carried(id, sel.commands) {
		names := commandList(sel.commands)
		hint := ""
		if s, ok := Suggest(id, fieldsOf(sel.commands)); ok {
			hint = fmt.Sprintf(" (did you mean %s?)", s)
		}
		if !tencentim.KnownField(id) {
			if hint == "" {
				if s, ok := Suggest(id, tencentim.KnownFields()); ok {
					hint = fmt.Sprintf(" (did you mean %s?)", s)
				}
			}
			return fmt.Sprintf("unknown field %s: %s does not carry it, so it is always nil on this route%s", id, names, hint), true
		}
		return fmt.Sprintf("%s is not carried by %s: it is always nil on this route%s", id, names, hint), true
	}
	if msg := unknownField(id); msg != "" {
		return msg, false
	}
	if len(f.Commands) == 0 {
		if !tencentim.CommonField(id) {
			return fmt.Sprintf(
				"%s is carried only by some callbacks (%s); this route has no commands, so for every other callback %s is nil (and nil != 0 is true): add commands",
				id, summarize(tencentim.CommandsWithField(id)), id), false
		}
		return "", false
	}
	return notCarried(id, sel.commands), false
}

func carried(id string, cmds []tencentim.CommandInfo) bool {
	for _, c := range cmds {
		if slices.Contains(c.Fields, id) {
			return true
		}
	}
	return false
}

// commandList names the commands of an exact selection, without repeats.
func commandList(cmds []tencentim.CommandInfo) string {
	var names []string
	for _, c := range cmds {
		if !slices.Contains(names, c.Name) {
			names = append(names, c.Name)
		}
	}
	return summarize(names)
}

func fieldsOf(cmds []tencentim.CommandInfo) []string {
	var fields []string
	for _, c := range cmds {
		fields = append(fields, c.Fields...)
	}
	slices.Sort(fields)
	return slices.Compact(fields)
}

func unknownField(id string) string {
	if id == "query" || id == "text" || tencentim.KnownField(id) {
		return ""
	}
	msg := fmt.Sprintf("unknown field %s: no known Tencent IM callback carries it", id)
	if s, ok := Suggest(id, tencentim.KnownFields()); ok {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return msg
}

// notCarried says when none of the selected commands whose fields are known carries id.
func notCarried(id string, selected []tencentim.CommandInfo) string {
	var known []string
	for _, c := range selected {
		if c.Fields == nil {
			return "" // a command with unknown fields may carry it
		}
		if slices.Contains(c.Fields, id) {
			return ""
		}
		known = append(known, c.Name)
	}
	if len(known) == 0 {
		return ""
	}
	return fmt.Sprintf("%s is not carried by %s: it is always nil on this route", id, summarize(known))
}

// kindOn is the JSON type of field id on a route: the one type it has in every command
// the route can see that carries it, or "" when that is not known or not one type.
func kindOn(id string, f Filter, sel selection) tencentim.Kind {
	var names []string
	if len(f.Commands) == 0 {
		names = tencentim.CommandsWithField(id)
	} else {
		for _, c := range sel.commands {
			if c.Fields == nil {
				return "" // a command whose body is unknown may carry it with any type
			}
			if slices.Contains(c.Fields, id) {
				names = append(names, c.Name)
			}
		}
	}
	var kind tencentim.Kind
	for _, name := range names {
		k, ok := tencentim.FieldKind(name, id)
		if !ok || (kind != "" && k != kind) {
			return ""
		}
		kind = k
	}
	return kind
}

func summarize(names []string) string {
	names = slices.Compact(slices.Clone(names))
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return strings.Join(names, ", ")
}

func commandNames() []string {
	var names []string
	for _, c := range tencentim.Commands() {
		names = append(names, c.Name)
	}
	return names
}

// use is a place where an expression reads a body field (or query, or text).
type use struct {
	name         string
	line, column int // 1-based, in the expression
}

// fieldUses returns the first use of every free variable of tree, in source order: not
// let-bound names, not predicate fields (.Text), not member names.
func fieldUses(tree *parser.Tree) []use {
	v := &identVisitor{bound: map[string]bool{}}
	ast.Walk(&tree.Node, v)
	first := map[string]*ast.IdentifierNode{}
	for _, n := range v.nodes {
		if v.bound[n.Value] {
			continue
		}
		if f := first[n.Value]; f == nil || n.Location().From < f.Location().From {
			first[n.Value] = n
		}
	}
	var out []use
	for _, n := range first {
		out = append(out, at(tree, n))
	}
	slices.SortFunc(out, func(a, b use) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return a.column - b.column
	})
	return out
}

// at is the use that identifier n is.
func at(tree *parser.Tree, n *ast.IdentifierNode) use {
	e := (&file.Error{Location: n.Location()}).Bind(tree.Source)
	return use{name: n.Value, line: e.Line, column: e.Column + 1}
}

// comparison is a field compared with literals: SendMsgResult != "0", To_Account in
// ["a", "b"], From_Account startsWith "admin".
type comparison struct {
	field    use
	op       string
	literals []ast.Node
	list     bool // the literals were written as a list (in)
}

// comparisons finds the comparisons of a free variable with literals in tree.
func comparisons(tree *parser.Tree) []comparison {
	v := &identVisitor{bound: map[string]bool{}}
	ast.Walk(&tree.Node, v)
	var out []comparison
	for _, b := range v.binaries {
		left, _ := b.Left.(*ast.IdentifierNode)
		right, _ := b.Right.(*ast.IdentifierNode)
		switch b.Operator {
		case "==", "!=", "<", ">", "<=", ">=":
			switch {
			case left != nil && !v.bound[left.Value] && literalKind(b.Right) != "":
				out = append(out, comparison{field: at(tree, left), op: b.Operator, literals: []ast.Node{b.Right}})
			case right != nil && !v.bound[right.Value] && literalKind(b.Left) != "":
				out = append(out, comparison{field: at(tree, right), op: mirror(b.Operator), literals: []ast.Node{b.Left}})
			}
		case "in":
			arr, _ := b.Right.(*ast.ArrayNode)
			if left == nil || v.bound[left.Value] || arr == nil || len(arr.Nodes) == 0 {
				continue
			}
			if slices.ContainsFunc(arr.Nodes, func(n ast.Node) bool { return literalKind(n) == "" }) {
				continue
			}
			out = append(out, comparison{field: at(tree, left), op: "in", literals: arr.Nodes, list: true})
		case "contains", "startsWith", "endsWith", "matches":
			if left != nil && !v.bound[left.Value] && literalKind(b.Right) == "string" {
				out = append(out, comparison{field: at(tree, left), op: b.Operator, literals: []ast.Node{b.Right}})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b comparison) int {
		if a.field.line != b.field.line {
			return a.field.line - b.field.line
		}
		return a.field.column - b.field.column
	})
	return out
}

// mirror is the operator of a comparison written the other way round ("0" < x is x > "0").
func mirror(op string) string {
	switch op {
	case "<":
		return ">"
	case ">":
		return "<"
	case "<=":
		return ">="
	case ">=":
		return "<="
	}
	return op
}

// literalKind is the JSON type of a literal ("bool" for true and false), or "" when n is
// not a literal that has one (nil, an expression).
func literalKind(n ast.Node) tencentim.Kind {
	switch t := n.(type) {
	case *ast.StringNode:
		return tencentim.KindString
	case *ast.IntegerNode, *ast.FloatNode:
		return tencentim.KindNumber
	case *ast.BoolNode:
		return "bool"
	case *ast.UnaryNode:
		if t.Operator == "-" || t.Operator == "+" {
			if k := literalKind(t.Node); k == tencentim.KindNumber {
				return k
			}
		}
	}
	return ""
}

// check says why the comparison cannot hold when the field is of kind, or "".
func (c comparison) check(kind tencentim.Kind) string {
	if kind == "" {
		return ""
	}
	for _, l := range c.literals {
		if literalKind(l) == kind {
			return "" // one literal of the right type: the comparison can hold
		}
	}
	var outcome string
	switch c.op {
	case "==":
		outcome = "is never true"
	case "!=":
		outcome = "is always true"
	default:
		outcome = "fails at run time (a rule error, counted as no match)"
	}
	msg := fmt.Sprintf("%s is %s, so %s %s", c.field.name, article(kind), c.text(nil), outcome)
	if fixed, ok := c.converted(kind); ok {
		msg += fmt.Sprintf(" (did you mean %s?)", fixed)
	}
	return msg
}

func article(k tencentim.Kind) string {
	if k == tencentim.KindObject {
		return "an object"
	}
	return "a " + string(k)
}

// text writes the comparison, each literal through conv (nil: as written).
func (c comparison) text(conv func(ast.Node) string) string {
	if conv == nil {
		conv = literalText
	}
	parts := make([]string, len(c.literals))
	for i, l := range c.literals {
		parts[i] = conv(l)
	}
	right := strings.Join(parts, ", ")
	if c.list {
		right = "[" + right + "]"
	}
	return c.field.name + " " + c.op + " " + right
}

// converted is the comparison with its literals written as kind, when every one can be:
// "0" as 0 for a number, 42 as "42" for a string.
func (c comparison) converted(kind tencentim.Kind) (string, bool) {
	switch c.op {
	case "contains", "startsWith", "endsWith", "matches":
		return "", false // string operators: the field is what is wrong, not the literal
	}
	ok := true
	s := c.text(func(n ast.Node) string {
		switch kind {
		case tencentim.KindNumber:
			if s, isStr := n.(*ast.StringNode); isStr {
				if _, err := strconv.ParseFloat(s.Value, 64); err == nil && strings.TrimSpace(s.Value) == s.Value {
					return s.Value
				}
			}
		case tencentim.KindString:
			if literalKind(n) == tencentim.KindNumber {
				return strconv.Quote(literalText(n))
			}
		}
		ok = false
		return ""
	})
	return s, ok
}

// literalText writes a literal as expr reads it.
func literalText(n ast.Node) string {
	switch t := n.(type) {
	case *ast.StringNode:
		return strconv.Quote(t.Value)
	case *ast.IntegerNode:
		return strconv.Itoa(t.Value)
	case *ast.FloatNode:
		return strconv.FormatFloat(t.Value, 'g', -1, 64)
	case *ast.BoolNode:
		return strconv.FormatBool(t.Value)
	case *ast.UnaryNode:
		return t.Operator + literalText(t.Node)
	}
	return n.String()
}
