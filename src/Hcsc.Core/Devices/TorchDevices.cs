using TorchSharp;

namespace Hcsc.Core.Devices;

/// <summary>Turns a device string from options or the command line into a TorchSharp device.</summary>
public static class TorchDevices
{
    /// <summary>
    /// Resolves <paramref name="spec"/>: <c>auto</c> (the first CUDA device when one is usable, else
    /// the CPU), <c>cpu</c>, <c>cuda</c> (CUDA device 0) or <c>cuda:N</c>. Case-insensitive.
    /// </summary>
    /// <exception cref="ArgumentException">The string is not one of the forms above.</exception>
    /// <exception cref="InvalidOperationException">CUDA was asked for but is not available, or the index is out of range.</exception>
    public static torch.Device Resolve(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!TryParse(spec, out var kind, out int index))
        {
            throw new ArgumentException(
                $"Device '{spec}' is not understood. Use 'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...).", nameof(spec));
        }

        return kind switch
        {
            DeviceKind.Auto => torch.cuda.is_available() ? torch.CUDA : torch.CPU,
            DeviceKind.Cpu => torch.CPU,
            _ => RequireCuda(spec, index),
        };
    }

    /// <summary>True when <paramref name="spec"/> has one of the forms <see cref="Resolve"/> accepts (whether or not CUDA is present).</summary>
    public static bool IsWellFormed(string? spec) => spec is not null && TryParse(spec, out _, out _);

    private static bool TryParse(string spec, out DeviceKind kind, out int index)
    {
        string normalized = spec.Trim().ToLowerInvariant();
        index = 0;
        kind = normalized switch
        {
            "auto" => DeviceKind.Auto,
            "cpu" => DeviceKind.Cpu,
            _ => DeviceKind.Cuda,
        };
        if (normalized is "auto" or "cpu" or "cuda")
        {
            return true;
        }

        return normalized.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(normalized.AsSpan("cuda:".Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index);
    }

    private static torch.Device RequireCuda(string spec, int index)
    {
        if (!torch.cuda.is_available())
        {
            throw new InvalidOperationException(
                $"Device '{spec}' was requested but CUDA is not available: this build uses a CPU-only TorchSharp backend or no GPU is visible. " +
                "Use --device cpu (or auto), or build with -p:TorchBackend=cuda-linux (cuda-windows on Windows) on a machine with an NVIDIA GPU and driver.");
        }

        int count = torch.cuda.device_count();
        if (index >= count)
        {
            throw new InvalidOperationException(
                $"Device '{spec}' was requested but only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1}).");
        }

        return new torch.Device(DeviceType.CUDA, index);
    }

    private enum DeviceKind
    {
        Auto,
        Cpu,
        Cuda,
    }
}
