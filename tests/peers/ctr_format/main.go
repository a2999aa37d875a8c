// `ctr images ls` as containerd v2.4.2 prints it (cmd/ctr/commands/images/images.go listCommand):
// the same tabwriter settings and format strings, with pkg/progress Bytes (docker/go-units
// CustomSize "%02.1f %s", base 1024). No containerd daemon can run here, so the images come from a
// JSON list on stdin: [{"name", "media_type", "digest", "size", "platforms": [...], "labels": {...}}].
// The tests record the ls parser's cases with it and hold the ctr stand-in's output against it.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

type image struct {
	Name      string            `json:"name"`
	MediaType string            `json:"media_type"`
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	Platforms []string          `json:"platforms"`
	Labels    map[string]string `json:"labels"`
}

func bytes(b int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"}
	size, i := float64(b), 0
	for size >= 1024 && i < len(units)-1 {
		size = size / 1024
		i++
	}
	return fmt.Sprintf("%02.1f %s", size, units[i])
}

func main() {
	var imageList []image
	if err := json.NewDecoder(os.Stdin).Decode(&imageList); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tw := tabwriter.NewWriter(os.Stdout, 1, 8, 1, ' ', 0)
	fmt.Fprintln(tw, "REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t")
	for _, image := range imageList {
		platformColumn := "-"
		if len(image.Platforms) > 0 {
			psm := map[string]struct{}{}
			for _, p := range image.Platforms {
				psm[p] = struct{}{}
			}
			var ps []string
			for p := range psm {
				ps = append(ps, p)
			}
			sort.Stable(sort.StringSlice(ps))
			platformColumn = strings.Join(ps, ",")
		}
		labels := "-"
		if len(image.Labels) > 0 {
			var pairs []string
			for k, v := range image.Labels {
				pairs = append(pairs, fmt.Sprintf("%v=%v", k, v))
			}
			sort.Strings(pairs)
			labels = strings.Join(pairs, ",")
		}
		fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%v\t%s\t\n", image.Name, image.MediaType, image.Digest, bytes(image.Size), platformColumn, labels)
	}
	tw.Flush()
}
