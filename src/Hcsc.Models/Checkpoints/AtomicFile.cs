using System.Runtime.InteropServices;

namespace Hcsc.Models.Checkpoints;

/// <summary>
/// Writes a file atomically: to a temporary file beside it, flushed to disk (fsync), renamed over the target, and the
/// folder synced (on Linux and macOS) so the rename itself survives a power cut.
/// </summary>
internal static partial class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        var temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            if (File.Exists(temporary))
            {
                File.Delete(temporary);
            }

            throw;
        }

        SyncDirectory(directory);
    }

    // Best effort: a folder that cannot be opened for syncing (some network file systems) is left as it is.
    private static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        int fd = open(directory, 0 /* O_RDONLY */);
        if (fd >= 0)
        {
            _ = fsync(fd);
            _ = close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int close(int fd);
}
