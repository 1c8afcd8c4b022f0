package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/peapod-dev/peapod/internal/image"
	"github.com/peapod-dev/peapod/internal/server"
)

// ImagesDirName is the image store's directory inside a node's data dir.
const ImagesDirName = "images"

// DefaultRegistriesFile is read for pulls when it exists (k3s keeps the same
// file at /etc/rancher/k3s/registries.yaml).
const DefaultRegistriesFile = "/etc/peapod/registries.yaml"

func newImageCommand(s Streams) *cobra.Command {
	dataDir := server.DefaultDataDir
	registries := DefaultRegistriesFile
	open := func() (*image.Store, error) {
		var cfg *image.RegistriesConfig
		if _, err := os.Stat(registries); err == nil {
			if cfg, err = image.LoadRegistriesFile(registries); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("registries file: %w", err)
		}
		return image.Open(image.Options{Root: filepath.Join(dataDir, ImagesDirName), Registries: cfg})
	}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the images of this machine's node (safe while the agent runs)",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", dataDir, "data dir of the node whose image store to use")
	cmd.PersistentFlags().StringVar(&registries, "registries", registries, "registries.yaml with mirrors, rewrites and credentials (used when it exists)")

	cmd.AddCommand(&cobra.Command{
		Use:   "load FILE...",
		Short: "Load images from OCI archives or docker save tarballs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, files []string) error {
			st, err := open()
			if err != nil {
				return err
			}
			for _, f := range files {
				imgs, err := st.LoadFile(c.Context(), f)
				if err != nil {
					return fmt.Errorf("load %s: %w", f, err)
				}
				for _, img := range imgs {
					fmt.Fprintf(s.Out, "Loaded image: %s (%s)\n", img.Name, img.ID)
				}
			}
			return nil
		},
	}, &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := open()
			if err != nil {
				return err
			}
			imgs, err := st.List(c.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(s.Out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(w, "IMAGE\tIMAGE ID\tSIZE")
			for _, img := range imgs {
				id := img.ID
				if len(id) > len("sha256:")+12 {
					id = id[len("sha256:") : len("sha256:")+12]
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", img.Name, id, humanSize(img.Size))
			}
			return w.Flush()
		},
	}, &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"remove"},
		Short:   "Remove images by name or ID",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, refs []string) error {
			st, err := open()
			if err != nil {
				return err
			}
			for _, r := range refs {
				names, err := st.Remove(c.Context(), r)
				if err != nil {
					return fmt.Errorf("remove %s: %w", r, err)
				}
				for _, n := range names {
					fmt.Fprintf(s.Out, "Deleted: %s\n", n)
				}
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from its registry (or the mirror registries.yaml names)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			st, err := open()
			if err != nil {
				return err
			}
			img, err := st.Pull(c.Context(), args[0], nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "Pulled image: %s (%s)\n", img.Name, img.ID)
			return nil
		},
	})
	return cmd
}

// humanSize prints bytes the way container CLIs do (decimal units).
func humanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fGB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}
