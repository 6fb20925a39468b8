package fetch_test

import (
	"net/netip"
	"testing"

	"github.com/sdevents/sdevents/pkg/fetch"
)

func TestIsPublic(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "93.184.216.34": true, "2606:4700:4700::1111": true,
		"2001:4860:4860::8888": true, "64:ff9b::808:808": true, "2002:808:808::1": true,

		"127.0.0.1": false, "127.255.255.254": false, "::1": false,
		"10.0.0.1": false, "172.16.0.1": false, "172.31.255.255": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fe80::1%eth0": false,
		"100.64.0.1": false, "100.127.255.255": false,
		"224.0.0.1": false, "239.255.255.250": false, "ff02::1": false,
		"0.0.0.0": false, "0.1.2.3": false, "::": false,
		"255.255.255.255": false, "240.0.0.1": false,
		"fc00::1": false, "fd12:3456::1": false, "fec0::1": false,
		"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "::ffff:169.254.169.254": false, "::127.0.0.1": false,
		"64:ff9b::7f00:1": false, "64:ff9b::a00:1": false, "2002:7f00:1::1": false, "2002:a00:1::": false,
		"192.0.2.1": false, "198.51.100.1": false, "203.0.113.1": false, "198.18.0.1": false, "2001:db8::1": false,
		"2001::1": false, "100::1": false,
	} {
		if got := fetch.IsPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("IsPublic(%s) = %v, want %v", addr, got, want)
		}
	}
}
