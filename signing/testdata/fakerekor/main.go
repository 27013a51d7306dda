// Command fakerekor answers Rekor's "create log entry" call on loopback so
// that `cosign sign-blob` takes its transparency-log path (the only path on
// which cosign v2.6.5 signs an ed25519 key, and it signs it ed25519ph)
// without publishing anything. It prints its address, then serves until
// killed. Used by make-vectors.sh and interop.sh only.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, http.HandlerFunc(createEntry)))
}

// createEntry accepts any proposed entry and returns it as log index 1.
func createEntry(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "want POST /api/v1/log/entries", http.StatusBadRequest)
		return
	}
	id := strings.Repeat("00", 32)
	entry := map[string]any{id: map[string]any{
		"body":           base64.StdEncoding.EncodeToString(body),
		"integratedTime": 1700000000,
		"logID":          id,
		"logIndex":       1,
	}}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(entry)
}
