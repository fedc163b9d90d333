using Hcsc.Core.Options;

namespace Hcsc.Core.Devices;

/// <summary>
/// The one place that decides between the C# host kernels and tensor operations. Every host kernel asks
/// <see cref="HostKernelsAllowed"/> before it takes a tensor, so <see cref="KernelPath.Tensor"/> sends a CPU run down
/// the code path a CUDA run takes, branch for branch.
/// </summary>
/// <remarks>
/// The choice holds for the current asynchronous flow (an <see cref="AsyncLocal{T}"/>, inherited by the tasks it
/// starts), from <see cref="Use"/> until the returned scope is disposed; outside every scope it is
/// <see cref="KernelPath.Auto"/>. Nothing process-wide changes, so tests running side by side do not see each other's
/// choice.
/// </remarks>
public static class KernelSelection
{
    private static readonly AsyncLocal<KernelPath?> Selected = new();

    /// <summary>The path chosen for this flow (<see cref="KernelPath.Auto"/> when none was).</summary>
    public static KernelPath Current => Selected.Value ?? KernelPath.Auto;

    /// <summary>Whether host kernels may take CPU tensors now: false only under <see cref="KernelPath.Tensor"/>.</summary>
    public static bool HostKernelsAllowed => Current != KernelPath.Tensor;

    /// <summary>Chooses <paramref name="path"/> for this flow until the returned scope is disposed (scopes nest).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="path"/> is not a <see cref="KernelPath"/>.</exception>
    public static IDisposable Use(KernelPath path)
    {
        if (!Enum.IsDefined(path))
        {
            throw new ArgumentOutOfRangeException(nameof(path), path, "Use Auto, Host or Tensor.");
        }

        var previous = Selected.Value;
        Selected.Value = path;
        return new Scope(previous);
    }

    private sealed class Scope(KernelPath? previous) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (!_disposed)
            {
                Selected.Value = previous;
                _disposed = true;
            }
        }
    }
}
