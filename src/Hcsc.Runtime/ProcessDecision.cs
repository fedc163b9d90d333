namespace Hcsc.Runtime;

/// <summary>A process-wide setting decided and applied once: the first <see cref="GetOrApply"/> runs, later calls return its result.</summary>
/// <typeparam name="T">The decision.</typeparam>
internal sealed class ProcessDecision<T>
    where T : class
{
    private readonly Lock _gate = new();
    private T? _applied;

    /// <summary>The decision applied in this process, or null before the first <see cref="GetOrApply"/>.</summary>
    public T? Applied
    {
        get
        {
            lock (_gate)
            {
                return _applied;
            }
        }
    }

    /// <summary>Returns the applied decision, running <paramref name="decideAndApply"/> first if there is none (again on the next call if it throws).</summary>
    public T GetOrApply(Func<T> decideAndApply)
    {
        lock (_gate)
        {
            return _applied ??= decideAndApply();
        }
    }
}
