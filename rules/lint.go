package rules

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// Warning is a lint finding: the config works, but probably not as meant. It is located
// like a CompileError (Kind, Index, Field); Kind "body" uses Index of the transform.
type Warning struct {
	Kind    string
	Index   int
	Field   string
	Message string
}

// Lint checks routes and respond rules against what Tencent's callbacks carry: unknown
// command names, unknown fields (with a "did you mean"), and fields that the selected
// commands cannot carry, which are nil at run time (the nil != 0 trap).
func Lint(routes []RouteSpec, responds []RespondSpec) []Warning {
	var out []Warning
	for i, r := range routes {
		for _, w := range lintFilter(r.Filter) {
			w.Kind, w.Index = "route", i
			out = append(out, w)
		}
	}
	for i, r := range responds {
		for _, w := range lintFilter(r.Filter) {
			w.Kind, w.Index = "respond", i
			out = append(out, w)
		}
	}
	return out
}

// LintBody checks a body transform for fields no callback carries.
func LintBody(src string) []Warning {
	var out []Warning
	ids, err := ParseIdentifiers(src)
	if err != nil {
		return nil
	}
	for _, id := range ids {
		if msg := unknownField(id); msg != "" {
			out = append(out, Warning{Kind: "body", Field: "body", Message: msg})
		}
	}
	return out
}

func lintFilter(f Filter) []Warning {
	var out []Warning
	var selected []tencentim.CommandInfo // known commands the globs select
	for _, g := range f.Commands {
		n := 0
		for _, c := range tencentim.Commands() {
			if ok, _ := path.Match(g, c.Name); ok {
				selected = append(selected, c)
				n++
			}
		}
		if n > 0 {
			continue
		}
		msg := fmt.Sprintf("unknown command %q", g)
		if !strings.ContainsAny(g, `*?[`) {
			if s, ok := Suggest(g, commandNames()); ok {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
		} else {
			msg = fmt.Sprintf("%q matches no known command", g)
		}
		out = append(out, Warning{Field: "commands", Message: msg})
	}
	if strings.TrimSpace(f.When) == "" {
		return out
	}
	ids, err := ParseIdentifiers(f.When)
	if err != nil {
		return out // Compile reports it
	}
	for _, id := range ids {
		if id == "query" || id == "text" {
			continue
		}
		if msg := unknownField(id); msg != "" {
			out = append(out, Warning{Field: "when", Message: msg})
			continue
		}
		if len(f.Commands) == 0 {
			if !tencentim.CommonField(id) {
				out = append(out, Warning{Field: "when", Message: fmt.Sprintf(
					"%s is carried only by some callbacks (%s); this route has no commands, so for every other callback %s is nil (and nil != 0 is true): add commands",
					id, summarize(tencentim.CommandsWithField(id)), id)})
			}
			continue
		}
		if msg := notCarried(id, selected); msg != "" {
			out = append(out, Warning{Field: "when", Message: msg})
		}
	}
	return out
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
