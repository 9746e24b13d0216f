// gotus uploads one file with go-tus (github.com/eventials/go-tus), for tests/test_go_tus.py.
//
//	gotus <endpoint> <file> <store.json> [stop-after-chunks]
//
// The upload URL is kept in <store.json> (a go-tus Store keyed by the file's fingerprint), so a
// second process given the same store resumes the upload: go-tus asks the server for its offset
// (HEAD) and sends only the rest. With stop-after-chunks the process exits with status 3 after
// that many chunks, as if it had been killed. On success it prints the upload URL.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	tus "github.com/eventials/go-tus"
)

const chunkSize = 1 << 20

// fileStore is a go-tus Store kept in a JSON file, so it outlives the process.
type fileStore struct {
	path string
	urls map[string]string
}

func openStore(path string) *fileStore {
	s := &fileStore{path: path, urls: map[string]string{}}
	if data, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(data, &s.urls)
	}
	return s
}

func (s *fileStore) save() {
	data, _ := json.Marshal(s.urls)
	if err := os.WriteFile(s.path, data, 0o600); err != nil {
		fail("saving the store", err)
	}
}

func (s *fileStore) Get(fingerprint string) (string, bool) {
	url, ok := s.urls[fingerprint]
	return url, ok
}

func (s *fileStore) Set(fingerprint, url string) { s.urls[fingerprint] = url; s.save() }
func (s *fileStore) Delete(fingerprint string)   { delete(s.urls, fingerprint); s.save() }
func (s *fileStore) Close()                      {}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "gotus: %s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: gotus <endpoint> <file> <store.json> [stop-after-chunks]")
		os.Exit(2)
	}
	endpoint, path, storePath := os.Args[1], os.Args[2], os.Args[3]
	stopAfter := -1
	if len(os.Args) > 4 {
		n, err := strconv.Atoi(os.Args[4])
		if err != nil {
			fail("stop-after-chunks", err)
		}
		stopAfter = n
	}
	f, err := os.Open(path)
	if err != nil {
		fail("opening the file", err)
	}
	defer f.Close()

	config := tus.DefaultConfig()
	config.ChunkSize = chunkSize
	config.Resume = true
	config.Store = openStore(storePath)
	client, err := tus.NewClient(endpoint, config)
	if err != nil {
		fail("client", err)
	}
	upload, err := tus.NewUploadFromFile(f)
	if err != nil {
		fail("upload", err)
	}
	upload.Metadata["filetype"] = "application/octet-stream"
	uploader, err := client.CreateOrResumeUpload(upload)
	if err != nil {
		fail("create or resume", err)
	}
	fmt.Fprintf(os.Stderr, "gotus: starting at offset %d of %d\n", uploader.Offset(), upload.Size())
	for chunks := 0; uploader.Offset() < upload.Size(); chunks++ {
		if chunks == stopAfter {
			fmt.Fprintf(os.Stderr, "gotus: stopping at offset %d\n", uploader.Offset())
			os.Exit(3)
		}
		if err := uploader.UploadChunck(); err != nil {
			fail("chunk", err)
		}
	}
	fmt.Println(uploader.Url())
}
