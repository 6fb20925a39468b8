package simulator_test

import (
	"encoding/json"

	"github.com/sdevents/sdevents/pkg/sns"
)

func jsonOf(e sns.Envelope) ([]byte, error) { return json.Marshal(e) }
