package rules

import (
	"encoding/json"
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Answer is a compiled success_when: an expression over a destination's answer that says
// whether the delivery succeeded, for receivers that answer 200 with an error code in the
// body (chat bots: DingTalk and WeCom `errcode`, Feishu `code`). Safe for concurrent use.
//
// Its environment: status (the HTTP status, an int), headers (the answer's headers by
// canonical name, the first value of each), body (the body as text) and json (the body
// decoded, or nil when it is not JSON). JSON integers compare exactly as int64, as in when.
type Answer struct {
	program *vm.Program
}

// answerEnv declares the names a success_when may use, for the compiler.
var answerEnv = map[string]any{
	"status":  0,
	"headers": map[string]string{},
	"body":    "",
	"json":    map[string]any{},
}

// CompileAnswer compiles a success_when. It must be boolean. The error is a *CompileError
// with Field "success_when" and the position inside src.
func CompileAnswer(src string) (*Answer, error) {
	p, err := expr.Compile(src, expr.Env(answerEnv), expr.AsBool())
	if err == nil {
		err = unknownFunction(src)
	}
	if err != nil {
		return nil, exprError("success_when", err)
	}
	return &Answer{program: p}, nil
}

// Success evaluates the expression on an answer. An expression that fails at run time (a
// field of a json that is not an object, say) is an error: the caller counts it as a
// failed attempt.
func (a *Answer) Success(status int, headers map[string]string, body []byte) (bool, error) {
	env := map[string]any{"status": status, "headers": headers, "body": string(body), "json": nil}
	if fields, err := ParseBody(body); err == nil {
		env["json"] = fields
	} else {
		var v any
		if json.Unmarshal(body, &v) == nil {
			env["json"] = v
		}
	}
	m := vms.Get().(*vm.VM)
	out, err := m.Run(a.program, env)
	vms.Put(m)
	if err != nil {
		return false, fmt.Errorf("success_when: %w", err)
	}
	ok, _ := out.(bool)
	return ok, nil
}
