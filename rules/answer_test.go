package rules

import (
	"errors"
	"testing"
)

func TestAnswer(t *testing.T) {
	tests := []struct {
		expr    string
		status  int
		body    string
		want    bool
		wantErr bool
	}{
		{`status == 200 && json.errcode == 0`, 200, `{"errcode":0,"errmsg":"ok"}`, true, false},
		{`status == 200 && json.errcode == 0`, 200, `{"errcode":130101,"errmsg":"send too fast"}`, false, false},
		{`status == 200 && json.errcode == 0`, 500, `{"errcode":0}`, false, false},
		{`json.code == 0`, 200, `{"code":9499,"msg":"Bad Request"}`, false, false},
		{`json.code == 0`, 200, `{"code":0,"data":{}}`, true, false},
		{`body == "ok"`, 200, `ok`, true, false},
		{`json == nil`, 200, `not json`, true, false},
		{`headers["X-Ok"] == "yes"`, 200, ``, true, false},
		{`json.errcode == 0`, 200, `[1,2]`, false, true}, // a member of a list: a run-time error
		{`json.errcode == 9007199254740993`, 200, `{"errcode":9007199254740993}`, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.expr+" "+tt.body, func(t *testing.T) {
			a, err := CompileAnswer(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Success(tt.status, map[string]string{"X-Ok": "yes"}, []byte(tt.body))
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("Success = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCompileAnswerErrors(t *testing.T) {
	for _, src := range []string{`status`, `json.errcode ==`, `lowercase(body) == "ok"`, `status == "200" && `} {
		_, err := CompileAnswer(src)
		var ce *CompileError
		if !errors.As(err, &ce) || ce.Field != "success_when" {
			t.Errorf("CompileAnswer(%q) = %v, want a success_when compile error", src, err)
		}
	}
}
