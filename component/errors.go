package component

import (
	"errors"
	"fmt"
)

// FieldError is a problem with one field of a config, named by its path of YAML keys from the
// config's section ("rate.threshold", "upstreams[2].url"). The config loader turns the path into
// the file, line and column of that field.
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Field wraps err as a problem with the field at path. A nil err stays nil.
func Field(path string, err error) error {
	if err == nil {
		return nil
	}
	return &FieldError{Path: path, Err: err}
}

// Fieldf is [Field] with a formatted message.
func Fieldf(path, format string, args ...any) error {
	return &FieldError{Path: path, Err: fmt.Errorf(format, args...)}
}

// Under puts the field errors in err under prefix, for a config that validates a nested one:
// Under("rate", rateCfg.Validate()). Errors that name no field become errors of the field prefix.
// Joined errors stay joined, each placed.
func Under(prefix string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Under(prefix, e))
		}
		return errors.Join(out...)
	}
	var fe *FieldError
	if errors.As(err, &fe) && fe == err {
		return &FieldError{Path: join(prefix, fe.Path), Err: fe.Err}
	}
	return &FieldError{Path: prefix, Err: err}
}

func join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case path[0] == '[':
		return prefix + path
	}
	return prefix + "." + path
}

// Flatten returns the individual errors of err: the members of joined errors, recursively.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
