package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/expr-lang/expr/vm"
)

// Body is a compiled body transform: an expression whose value is sent as JSON instead of
// the callback's original body. Safe for concurrent use.
type Body struct {
	program  *vm.Program
	needText bool
}

// CompileBody compiles a body transform. The error is a *CompileError with Field "body"
// and the position inside src.
func CompileBody(src string) (*Body, error) {
	p, err := compileExpr(src)
	if err != nil {
		return nil, exprError("body", err)
	}
	ids, _ := ParseIdentifiers(src)
	return &Body{program: p, needText: slices.Contains(ids, "text")}, nil
}

// Render evaluates the transform on ev and encodes its value as JSON.
func (b *Body) Render(ev *Event) ([]byte, error) {
	m := vms.Get().(*vm.VM)
	out, err := m.Run(b.program, ev.environment(b.needText))
	vms.Put(m)
	if err != nil {
		return nil, fmt.Errorf("body transform: %w", err)
	}
	// As written: no \u003c for <, which chat bots' markdown (<font>) needs.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("body transform: value is not JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Transform decodes a stored callback (raw query and body) and renders the transform:
// the form the delivery path calls, which has bytes, not events.
func (b *Body) Transform(appID, command string, query map[string]string, body []byte) ([]byte, error) {
	fields, err := ParseBody(body)
	if err != nil {
		return nil, err
	}
	return b.Render(NewEvent(appID, command, query, fields))
}
