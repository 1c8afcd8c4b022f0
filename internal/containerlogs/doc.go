// Package containerlogs rotates the logs of running containers the way
// upstream's kubelet does (pkg/kubelet/logs, containerLogMaxSize 10Mi and
// containerLogMaxFiles 5 by default), so that files on disk look exactly as
// on a kubelet node and upstream's readers find them.
//
// # One pass (Manager.Rotate)
//
// For every running container (ListContainers), with LOG its LogPath:
//
//  1. LOG missing (lost in an interrupted rotation): ReopenContainerLog, so
//     that the runtime's monitor creates it again.
//  2. LOG smaller than MaxSize: nothing to do.
//  3. Its rotated files LOG.TIMESTAMP[.gz] (TIMESTAMP is 20060102-150405 of
//     the clock, in local time, as upstream names them) are tidied: leftovers
//     of an interrupted compression (LOG.TIMESTAMP.gz.tmp, upstream's
//     LOG.TIMESTAMP.tmp, an uncompressed file next to its .gz) are removed,
//     then the oldest files beyond MaxFiles-2, then every rotated file still
//     uncompressed is gzipped (to LOG.TIMESTAMP.gz.tmp, synced, renamed to
//     LOG.TIMESTAMP.gz, then the original removed).
//  4. LOG is renamed to LOG.TIMESTAMP and the runtime is asked to reopen the
//     log: its monitor keeps writing to the renamed file until it opens a
//     new LOG, and writes whole lines, so no line is lost or split at the
//     boundary. If the reopen fails, LOG.TIMESTAMP is renamed back (unless
//     a new LOG appeared meanwhile, which is then kept: rename without
//     replacing), to be rotated again on a later pass.
//
// After a pass a container has at most MaxFiles files: LOG, the newest
// rotated file uncompressed (a reader following LOG may still be finishing
// it) and older ones gzipped. Names are per second; a rotation that would
// reuse the name of one made in the same second waits for the next pass.
// Only files named as above are touched; anything else next to LOG is left
// alone.
//
// Readers: upstream's ReadLogs (k8s.io/cri-client/pkg/logs) reads LOG
// only, and when following it reopens LOG when a file of that name is
// created, which is what the runtime's reopen does; `--previous` reads the
// previous container instance's own LOG (another attempt's file), which
// rotation leaves in place. Containers that are not running are not
// rotated (they write nothing more).
//
// Run repeats passes every period (upstream: containerLogMonitorInterval,
// 10 s). Passes are serialised.
package containerlogs
