namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Named points where a run can be made to wait, so a test can kill it there deterministically: set
/// <c>HCSC_PAUSE_AT</c> to <c>epochE-stepS</c> (after the optimiser update of step S of epoch E, before anything is
/// written), <c>epochE-clustering</c> (when the clustering of epoch E starts), <c>epochE-checkpoint-write</c> (the
/// checkpoint after epoch E is written to its temporary file, not yet renamed; <c>epochE-stepS-checkpoint-write</c>
/// for a mid-epoch one), or <c>untrained-evaluation</c>, <c>epochE-evaluation</c>, <c>trained-evaluation</c> (when the
/// kNN and clustering evaluation starts). The run prints
/// <c>paused at NAME</c> on its output and waits until it is killed or asked to stop. Unset, it costs one string comparison.
/// </summary>
public static class FaultInjection
{
    /// <summary>The environment variable naming the point to pause at.</summary>
    public const string EnvironmentVariable = "HCSC_PAUSE_AT";

    /// <summary>
    /// The environment variable naming a point (of the same names) where the disk is made to look full: the write
    /// under way fails with an <see cref="IOException"/> as it would with ENOSPC.
    /// </summary>
    public const string FailEnvironmentVariable = "HCSC_FAIL_AT";

    /// <summary>
    /// The environment variable naming a step (<c>epochE-stepS</c>) whose gradients are made NaN after the backward
    /// pass, once per process, as an overflowing step would make them.
    /// </summary>
    public const string NanEnvironmentVariable = "HCSC_NAN_AT";

    private static readonly string? Point = Environment.GetEnvironmentVariable(EnvironmentVariable);
    private static readonly string? FailurePoint = Environment.GetEnvironmentVariable(FailEnvironmentVariable);
    private static readonly string? NanPoint = Environment.GetEnvironmentVariable(NanEnvironmentVariable);
    private static int _nanInjected;

    /// <summary>
    /// The first time epoch <paramref name="epoch"/>, step <paramref name="step"/> (1-based) is the step named by
    /// <c>HCSC_NAN_AT</c> (<c>epochE-stepS</c>), sets the first element of <paramref name="model"/>'s first gradient to
    /// NaN. Unset, it costs one null check per step.
    /// </summary>
    public static void CorruptGradientAt(int epoch, int step, TorchSharp.torch.nn.Module model)
    {
        if (NanPoint is null || NanPoint != $"epoch{epoch}-step{step}" || Interlocked.Exchange(ref _nanInjected, 1) == 1)
        {
            return;
        }

        using var nan = TorchSharp.ScalarExtensionMethods.ToScalar(double.NaN);
        model.parameters().First(p => p.grad is not null).grad!.view(-1)[0].fill_(nan);
    }

    /// <summary>Throws "No space left on device" when <paramref name="name"/> is the point named by <c>HCSC_FAIL_AT</c>.</summary>
    /// <exception cref="IOException">At that point.</exception>
    public static void FailAt(string name)
    {
        if (FailurePoint is not null && string.Equals(FailurePoint, name, StringComparison.Ordinal))
        {
            throw new IOException($"No space left on device (simulated at {name} by {FailEnvironmentVariable})");
        }
    }

    /// <summary>
    /// Waits when <paramref name="name"/> is the point asked for: until the process is killed, or until
    /// <paramref name="stop"/> is requested (a SIGTERM or SIGINT) or a checkpoint is asked for (SIGUSR1/SIGUSR2), when
    /// the run goes on to honour it. With <paramref name="anyRank"/> (data-parallel runs, where every rank pauses at the
    /// same point) the ranks wait until any of them was asked, so a signal to one rank releases them all.
    /// </summary>
    public static void PauseAt(string name, TextWriter output, GracefulStop stop, Func<bool, bool>? anyRank = null)
    {
        if (Point is null || !string.Equals(Point, name, StringComparison.Ordinal))
        {
            return;
        }

        output.WriteLine($"paused at {name}");
        output.Flush();
        anyRank ??= asked => asked;
        while (!anyRank(stop.Requested || stop.CheckpointRequested))
        {
            Thread.Sleep(20);
        }
    }
}
