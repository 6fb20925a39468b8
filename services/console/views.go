package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sdevents/sdevents/pkg/httpserver"
)

//go:embed web/templates/*.html
var templateFS embed.FS

//go:embed web/static
var staticFS embed.FS

// pages are the templates rendered with the layout.
var pages = []string{"login", "error", "jobs", "job", "accounts", "account", "archive", "dead", "live"}

// page is what every page template gets.
type page struct {
	Title    string
	Active   string // the navigation tab
	CSRF     string // the session's CSRF token, for forms
	LoggedIn bool
	Data     any
}

// views are the parsed templates: one set per page (layout + page), plus the
// chart fragment.
type views struct {
	pages map[string]*template.Template
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"thumb": func(key string, size string) string {
		return "/console/thumb?" + url.Values{"key": {key}, "size": {size}}.Encode()
	},
	"original": func(key string) string { return "/console/image?" + url.Values{"key": {key}}.Encode() },
	"before": func(base string, seq uint64) string {
		return base + "?" + url.Values{"before": {fmt.Sprint(seq)}}.Encode()
	},
	"pathEscape": url.PathEscape,
	"dur": func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return "—"
		}
		return b.Sub(a).Round(time.Second).String()
	},
}

func loadViews() (*views, error) {
	v := &views{pages: map[string]*template.Template{}}
	for _, p := range pages {
		t, err := template.New(p).Funcs(funcs).ParseFS(templateFS, "web/templates/layout.html", "web/templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", p, err)
		}
		v.pages[p] = t
	}
	return v, nil
}

// render writes page name with the layout. The page is rendered to memory
// first, so that a template error becomes an error answer, not half a page.
func (s *Service) render(c echo.Context, status int, name string, p page) error {
	t, ok := s.views.pages[name]
	if !ok {
		return fmt.Errorf("no template %q", name)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	return c.HTMLBlob(status, b.Bytes())
}

// handleStatic serves the embedded script and style sheet.
func (s *Service) handleStatic(c echo.Context) error {
	name := path.Clean("/" + c.Param("*"))
	raw, err := fs.ReadFile(staticFS, "web/static"+name)
	if err != nil {
		return fmt.Errorf("%w: no such file", httpserver.ErrNotFound)
	}
	ct := "application/octet-stream"
	switch path.Ext(name) {
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=3600")
	return c.Blob(http.StatusOK, ct, raw)
}

// handleLive serves GET /console/live: the rate chart and the tail.
func (s *Service) handleLive(c echo.Context) error {
	return s.render(c, http.StatusOK, "live", page{Title: "Live", Active: "live", CSRF: csrfOf(c), LoggedIn: true, Data: s.live.chart()})
}

// handleChart serves GET /console/live/chart: the chart alone, for the
// page's script to refresh it.
func (s *Service) handleChart(c echo.Context) error {
	var b bytes.Buffer
	if err := s.views.pages["live"].ExecuteTemplate(&b, "chart", s.live.chart()); err != nil {
		return fmt.Errorf("render chart: %w", err)
	}
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}
