package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// LoadSettings decodes the settings the host passed to this connector process
// (the JSON object in $TONGBAN_CONNECTOR_CONFIG) into v, a pointer to a
// struct with json tags. Unknown keys are an error naming the key, so a typo
// in the gateway's configuration is not silently ignored. An empty or unset
// variable leaves v unchanged.
func LoadSettings(v any) error {
	return DecodeSettings([]byte(os.Getenv(EnvConfig)), v)
}

// DecodeSettings decodes settings JSON as LoadSettings does. Tests of a
// connector's configuration use it directly.
func DecodeSettings(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding connector settings from $%s: %w", EnvConfig, err)
	}
	return nil
}

// ConnectorName returns the connector's name from the host configuration
// ($TONGBAN_CONNECTOR_NAME), or "" when the process was not started by a
// host.
func ConnectorName() string { return os.Getenv(EnvName) }
