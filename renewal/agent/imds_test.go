package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// imdsCred is the answer of aws_signing_helper serve's credentials path.
type imdsCred struct {
	AccessKeyId, SecretAccessKey, Token, Code, Expiration string
}

var imdsClient = &http.Client{Timeout: 10 * time.Second}

// imdsGet does one IMDSv2 exchange with aws_signing_helper serve: PUT a
// token, list the role, GET its credentials.
func imdsGet(port int) (*imdsCred, int, error) {
	base := fmt.Sprintf("http://127.0.0.1:%d/latest/", port)
	req, _ := http.NewRequest(http.MethodPut, base+"api/token", nil)
	req.Header.Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "60")
	resp, err := imdsClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("token: %s", resp.Status)
	}
	get := func(path string) ([]byte, int, error) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("X-Aws-Ec2-Metadata-Token", string(tok))
		resp, err := imdsClient.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return b, resp.StatusCode, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return b, resp.StatusCode, err
	}
	role, code, err := get("meta-data/iam/security-credentials/")
	if err != nil {
		return nil, code, err
	}
	body, code, err := get("meta-data/iam/security-credentials/" + strings.TrimSpace(string(role)))
	if err != nil {
		return nil, code, err
	}
	var c imdsCred
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, code, fmt.Errorf("credentials %q: %w", body, err)
	}
	return &c, code, nil
}

func imdsCredentials(t *testing.T, port int) *imdsCred {
	t.Helper()
	c, _, err := imdsGet(port)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
