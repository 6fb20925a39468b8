package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sdevents/sdevents/pkg/callback"
)

func newSimCmd(g *globals) *cobra.Command {
	sim := &cobra.Command{
		Use:   "sim",
		Short: "Play the platforms: sign and send callbacks",
	}
	sim.AddCommand(newSimSendCmd(g))
	return sim
}

// newSimSendCmd signs one callback exactly as the platform does and sends it.
func newSimSendCmd(g *globals) *cobra.Command {
	var (
		target, source, bizType, invokeID, apiID, token, body string
		keyIndex                                              int
	)
	cmd := &cobra.Command{
		Use:   "send",
		Short: "Sign one callback with a configured key pair and POST it",
		Example: `  sdevents sim send --config sdevents.example.yaml --biz-type sdTaskFinished \
    --token user-42 --invoke-id i-1 --body '{"success":true,"data":{"generatedImageId":"g-1","url":"https://example.com/a.png"}}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if source == "" && len(cfg.Callbacks) > 0 {
				source = cfg.Callbacks[0].Name
			}
			src, ok := cfg.CallbackSource(source)
			if !ok {
				return fmt.Errorf("no callback source %q in the configuration", source)
			}
			if keyIndex < 0 || keyIndex >= len(src.Keys) {
				return fmt.Errorf("source %q has %d key pairs", source, len(src.Keys))
			}
			key := callback.Key{AK: src.Keys[keyIndex].AK, SK: src.Keys[keyIndex].SK.Reveal()}
			if target == "" {
				target = "http://" + cfg.HTTP.Addr
			}
			enc := ""
			if token != "" {
				if enc, err = callback.EncryptToken(token, key.SK, nil); err != nil {
					return err
				}
			}
			p := callback.Params{APIID: apiID, BizType: bizType, InvokeID: invokeID, APIToken: enc,
				Nonce: strconv.FormatInt(time.Now().UnixNano(), 36), Timestamp: strconv.FormatInt(time.Now().UnixMilli(), 10)}
			p.Sign = callback.Sign(key, p, []byte(body), token)
			q := url.Values{"apiId": {p.APIID}, "bizType": {p.BizType}, "invokeId": {p.InvokeID}, "apiToken": {p.APIToken},
				"sign": {p.Sign}, "nonce": {p.Nonce}, "timestamp": {p.Timestamp}}
			u := target + "/v1/callbacks/" + url.PathEscape(source) + "?" + q.Encode()
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Post(u, "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			fmt.Fprintf(cmd.OutOrStdout(), "%d %s\n", resp.StatusCode, bytes.TrimSpace(out))
			if resp.StatusCode >= 300 {
				return fmt.Errorf("answered %d", resp.StatusCode)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "url", "", "base URL of the ingress (default http://<http.addr>)")
	f.StringVar(&source, "source", "", "callback source name (default: the first)")
	f.IntVar(&keyIndex, "key", 0, "index of the source's key pair to sign with")
	f.StringVar(&bizType, "biz-type", callback.BizTaskFinished, "bizType")
	f.StringVar(&invokeID, "invoke-id", "i-"+strconv.FormatInt(time.Now().UnixNano(), 36), "invokeId")
	f.StringVar(&apiID, "api-id", "api-txt2img", "apiId")
	f.StringVar(&token, "token", "user-1", "the user's token (sent encrypted)")
	f.StringVar(&body, "body", `{"success":true,"data":{"generatedImageId":"g-1","url":"https://example.com/a.png","type":"png","width":"512","height":512}}`, "request body")
	return cmd
}
