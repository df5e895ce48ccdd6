package main

import (
	"context"
	"errors"
	"io"
)

func runDLQ(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("the dead-letter commands need the admin API, which this version does not serve yet")
}
