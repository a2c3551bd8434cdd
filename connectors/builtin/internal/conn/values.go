package conn

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/connectors/builtin/internal/geom"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Value converts a value sent by a department to the dictionary type of f:
// strings stay strings, numbers become numbers even when sent as strings,
// dates become "YYYY-MM-DD" strings, geometries GeoJSON objects. It reports
// false when the value is absent (nil, or an empty string for a field that
// is not a string).
func Value(f datasets.Field, raw any) (*structpb.Value, bool, error) {
	if raw == nil {
		return nil, false, nil
	}
	if b, ok := raw.([]byte); ok {
		raw = string(b)
	}
	if s, ok := raw.(string); ok && f.Type != "string" && strings.TrimSpace(s) == "" {
		return nil, false, nil
	}
	var (
		v   *structpb.Value
		err error
	)
	switch f.Type {
	case "string":
		v, err = stringValue(raw)
	case "number", "integer":
		var n float64
		n, err = number(raw)
		if err == nil && f.Type == "integer" && n != math.Trunc(n) {
			err = fmt.Errorf("%v is not an integer", n)
		}
		v = structpb.NewNumberValue(n)
	case "bool":
		v, err = boolValue(raw)
	case "date":
		var d string
		d, err = Date(raw)
		v = structpb.NewStringValue(d)
	case "geometry":
		v, err = geometryValue(raw)
	default:
		err = fmt.Errorf("unknown field type %q", f.Type)
	}
	if err != nil {
		return nil, false, fmt.Errorf("field %s (%s): %w", f.Name, f.Type, err)
	}
	return v, true, nil
}

func stringValue(raw any) (*structpb.Value, error) {
	switch x := raw.(type) {
	case string:
		return structpb.NewStringValue(x), nil
	case json.Number:
		return structpb.NewStringValue(x.String()), nil
	case float64:
		return structpb.NewStringValue(strconv.FormatFloat(x, 'f', -1, 64)), nil
	case float32:
		return structpb.NewStringValue(strconv.FormatFloat(float64(x), 'f', -1, 32)), nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return structpb.NewStringValue(fmt.Sprint(x)), nil
	case bool:
		return structpb.NewStringValue(strconv.FormatBool(x)), nil
	case time.Time:
		return structpb.NewStringValue(x.Format(time.RFC3339)), nil
	}
	return nil, fmt.Errorf("cannot use %T as a string", raw)
}

func number(raw any) (float64, error) {
	var n float64
	switch x := raw.(type) {
	case float64:
		n = x
	case float32:
		n = float64(x)
	case int:
		n = float64(x)
	case int8:
		n = float64(x)
	case int16:
		n = float64(x)
	case int32:
		n = float64(x)
	case int64:
		n = float64(x)
	case uint:
		n = float64(x)
	case uint8:
		n = float64(x)
	case uint16:
		n = float64(x)
	case uint32:
		n = float64(x)
	case uint64:
		n = float64(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x.String())
		}
		n = f
	case string:
		s := strings.ReplaceAll(strings.TrimSpace(x), ",", "")
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		n = f
	default:
		return 0, fmt.Errorf("cannot use %T as a number", raw)
	}
	if math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("%v is not a finite number", n)
	}
	return n, nil
}

func boolValue(raw any) (*structpb.Value, error) {
	switch x := raw.(type) {
	case bool:
		return structpb.NewBoolValue(x), nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "1", "y", "yes", "是":
			return structpb.NewBoolValue(true), nil
		case "false", "0", "n", "no", "否":
			return structpb.NewBoolValue(false), nil
		}
		return nil, fmt.Errorf("%q is not a boolean", x)
	}
	n, err := number(raw)
	if err != nil || (n != 0 && n != 1) {
		return nil, fmt.Errorf("cannot use %v as a boolean", raw)
	}
	return structpb.NewBoolValue(n == 1), nil
}

var dateLayouts = []string{
	"2006-01-02",
	"2006/01/02",
	"20060102",
	"2006.01.02",
	"2006年1月2日",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	time.RFC3339Nano,
}

// Date converts a department date (a time.Time, "YYYY-MM-DD", "YYYY/MM/DD",
// "YYYYMMDD", "YYYY年M月D日" or an RFC 3339 timestamp) to "YYYY-MM-DD". A
// timestamp keeps the calendar day of its own offset.
func Date(raw any) (string, error) {
	switch x := raw.(type) {
	case time.Time:
		return x.Format("2006-01-02"), nil
	case string:
		s := strings.TrimSpace(x)
		for _, l := range dateLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t.Format("2006-01-02"), nil
			}
		}
		return "", fmt.Errorf("%q is not a date", x)
	}
	return "", fmt.Errorf("cannot use %T as a date", raw)
}

func geometryValue(raw any) (*structpb.Value, error) {
	var m map[string]any
	switch x := raw.(type) {
	case map[string]any:
		m = x
	case string:
		if err := json.Unmarshal([]byte(x), &m); err != nil {
			return nil, fmt.Errorf("decoding GeoJSON text: %w", err)
		}
	default:
		return nil, fmt.Errorf("cannot use %T as a GeoJSON geometry", raw)
	}
	if _, err := geom.ParseValue(m); err != nil {
		return nil, err
	}
	s, err := structpb.NewStruct(normalize(m).(map[string]any))
	if err != nil {
		return nil, fmt.Errorf("converting geometry: %w", err)
	}
	return structpb.NewStructValue(s), nil
}

// normalize turns json.Number values into float64 so that structpb accepts
// them.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return x.String()
		}
		return f
	}
	return v
}

// Timestamp converts a department change time (time.Time, RFC 3339 text or a
// date) to a protobuf timestamp; nil or "" gives nil.
func Timestamp(raw any) (*timestamppb.Timestamp, error) {
	switch x := raw.(type) {
	case nil:
		return nil, nil
	case time.Time:
		return timestamppb.New(x), nil
	case []byte:
		return Timestamp(string(x))
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return nil, nil
		}
		for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
			if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
				return timestamppb.New(t), nil
			}
		}
		return nil, fmt.Errorf("updated_at: %q is not a timestamp", x)
	}
	return nil, fmt.Errorf("updated_at: cannot use %T as a timestamp", raw)
}

// Record builds a source record of ds from raw values keyed by field name.
// Unknown field names are an error; absent values are left out.
func Record(ds *datasets.Dataset, id string, raw map[string]any, updated any) (*v1.SourceRecord, error) {
	if id == "" {
		return nil, errors.New("record has no id")
	}
	fields := make(map[string]*structpb.Value, len(raw))
	for name, r := range raw {
		f, ok := ds.Field(name)
		if !ok {
			return nil, fmt.Errorf("%q is not a field of %s", name, ds.Name)
		}
		v, ok, err := Value(f, r)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", id, err)
		}
		if ok {
			fields[name] = v
		}
	}
	ts, err := Timestamp(updated)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", id, err)
	}
	return &v1.SourceRecord{Id: id, Fields: &structpb.Struct{Fields: fields}, UpdatedAt: ts}, nil
}

// IDString renders a department identifier value as text.
func IDString(raw any) (string, error) {
	switch x := raw.(type) {
	case nil:
		return "", errors.New("record id is missing")
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case json.Number:
		return x.String(), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("cannot use %T as a record id", raw)
}

// Number converts a department number (a number or numeric text) to float64.
func Number(raw any) (float64, error) { return number(raw) }
