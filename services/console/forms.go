package console

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

// maxFormBytes bounds the body of every console form: the largest, a grant
// by token:<token>, holds four short fields.
const maxFormBytes = 4 << 10

// formType is the only body the console's forms take.
const formType = "application/x-www-form-urlencoded"

// ErrFormType: a console POST carried a body that is not a URL-encoded form
// (415); send the form as application/x-www-form-urlencoded.
var ErrFormType = errors.New("console forms take " + formType + " only")

func init() { httpserver.RegisterStatus(ErrFormType, http.StatusUnsupportedMediaType) }

// errFormTooLarge: a form body over maxFormBytes (413).
var errFormTooLarge = fmt.Errorf("%w: a console form holds at most %d bytes", httpserver.ErrTooLarge, maxFormBytes)

// limitForms guards every request with a body, before authentication and
// before anything reads it: a body that is not a URL-encoded form is
// refused (415), one declared larger than maxFormBytes too (413), and the
// rest is bounded to maxFormBytes, which readForm reports as 413. A refused
// body is not read: the connection is closed after the answer (net/http may
// still drain up to 256 KiB of a chunked body into nothing).
func limitForms(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength == 0 { // no body (-1 is a body of unknown length)
			return next(c)
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
		if err != nil || mt != formType {
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return ErrFormType
		}
		if r.ContentLength > maxFormBytes {
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return errFormTooLarge
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFormBytes)
		err = next(c)
		if err != nil && r.PostForm == nil && !c.Response().Committed {
			// Refused before the form was read: do not read it now either.
			c.Response().Header().Set(echo.HeaderConnection, "close")
		}
		return err
	}
}

// readForm parses the request's URL-encoded body (limitForms has bounded
// it) into its PostForm. Call it only after every check that needs no
// field: the CSRF cookie, the session, the brake on guessing. It fails with
// a 413 error when the body is over maxFormBytes, a 400 one when it cannot
// be read. Calling it again does nothing.
func readForm(c echo.Context) error {
	r := c.Request()
	if r.PostForm != nil {
		return nil
	}
	if err := r.ParseForm(); err != nil {
		r.PostForm = nil
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return errFormTooLarge
		}
		return fmt.Errorf("%w: form: %v", httpserver.ErrBadRequest, err)
	}
	return nil
}

// field returns a field of the form's body (never of the URL's query), read
// by readForm.
func field(c echo.Context, name string) string {
	return c.Request().PostForm.Get(name)
}
