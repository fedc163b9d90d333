using System.Diagnostics;

namespace Hcsc.Benchmarks;

/// <summary>Runs a peer's Python script (Debian's python3 with torch, torchvision, faiss) and returns its output.</summary>
public static class PeerScript
{
    /// <summary>The interpreter with Debian's packages: /usr/bin/python3 (not a pyenv one).</summary>
    public const string Python = "/usr/bin/python3";

    /// <summary>The shared bench scripts: ../shared/bench from the repository root, or HCSC_SHARED_BENCH.</summary>
    public static string SharedBench(string file)
    {
        string? root = Environment.GetEnvironmentVariable("HCSC_SHARED_BENCH");
        if (root is null)
        {
            var directory = new DirectoryInfo(AppContext.BaseDirectory);
            while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Hcsc.sln")))
            {
                directory = directory.Parent;
            }

            root = directory is null ? "../shared/bench" : Path.Combine(directory.FullName, "..", "shared", "bench");
        }

        string path = Path.GetFullPath(Path.Combine(root, file));
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The peer script '{path}' is missing. Set HCSC_SHARED_BENCH to the folder of the shared bench scripts.");
        }

        return path;
    }

    /// <summary>Runs <paramref name="script"/> with <paramref name="arguments"/>; throws with its stderr when it fails.</summary>
    public static string Run(string script, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(script);
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {Python}.");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{Python} {script} failed ({process.ExitCode}): {stderr.Result}\nInstall the peers: apt-get install -y python3-torch python3-torchvision python3-faiss libopenblas0-pthread");
        }

        return stdout;
    }
}
