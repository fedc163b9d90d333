using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// Exceptions raised inside the backward pass of Hcsc's custom autograd kernels. libtorch calls those passes from
/// native code, where a .NET exception would end the process (SIGABRT); so each kernel catches it, returns NaN
/// gradients (which no optimiser step should take), and the exception waits here until <see cref="ThrowIfAny"/>.
/// <see cref="HcscLossResult.Backward"/> calls it after <c>Total.backward()</c>; callers who call <c>backward()</c>
/// themselves call it next.
/// </summary>
public static class BackwardFailures
{
    private static readonly ConcurrentQueue<(string Kernel, Exception Error)> Pending = new();

    /// <summary>Test hook: called with the kernel's name at the start of every custom backward pass.</summary>
    internal static Action<string>? FaultForTesting { get; set; }

    /// <summary>Throws <see cref="BackwardPassException"/> for the exceptions raised since the last call, if any (and forgets them).</summary>
    /// <exception cref="BackwardPassException">A custom backward pass failed; its gradients are NaN.</exception>
    public static void ThrowIfAny()
    {
        var failures = new List<(string Kernel, Exception Error)>();
        while (Pending.TryDequeue(out var failure))
        {
            failures.Add(failure);
        }

        if (failures.Count > 0)
        {
            throw new BackwardPassException(failures);
        }
    }

    /// <summary>Runs a kernel's backward pass; if it throws, keeps the exception and returns <paramref name="nanGradients"/>.</summary>
    internal static List<Tensor> Run(string kernel, Func<List<Tensor>> backward, Func<List<Tensor>> nanGradients)
    {
        try
        {
            FaultForTesting?.Invoke(kernel);
            return backward();
        }
        catch (Exception e)
        {
            Pending.Enqueue((kernel, e is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerExceptions[0] : e));
            return nanGradients();
        }
    }
}

/// <summary>A custom backward pass of an Hcsc loss kernel failed; the gradients of that step are NaN and must not be applied.</summary>
public sealed class BackwardPassException : InvalidOperationException
{
    internal BackwardPassException(IReadOnlyList<(string Kernel, Exception Error)> failures)
        : base(Describe(failures), failures.Count == 1 ? failures[0].Error : new AggregateException(failures.Select(f => f.Error)))
    {
        Kernels = failures.Select(f => f.Kernel).ToArray();
    }

    /// <summary>The kernels whose backward pass failed, in the order they failed.</summary>
    public IReadOnlyList<string> Kernels { get; }

    private static string Describe(IReadOnlyList<(string Kernel, Exception Error)> failures) =>
        $"The backward pass of {string.Join(", ", failures.Select(f => $"{f.Kernel} failed ({f.Error.GetType().Name}: {f.Error.Message})"))}. " +
        "Its gradients are NaN: do not step the optimiser; resume from the last checkpoint once the cause is fixed.";
}
