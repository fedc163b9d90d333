using System.Globalization;
using Hcsc.Core.Options;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Runs a pretraining and, when it diverges (<see cref="TrainingDivergedException"/>), resumes it from its last good
/// checkpoint with half the learning rate, up to <see cref="PretrainSettings.DivergenceRetries"/> times. The diverged
/// step never reached the weights and the last checkpoint is always finite, so the retry starts from a sound state;
/// without a checkpoint yet it starts over.
/// </summary>
public static class DivergenceRetry
{
    /// <summary>Runs <paramref name="options"/> (its learning rate is lowered in place on each retry).</summary>
    /// <exception cref="TrainingDivergedException">The run diverged once more than the retries allow.</exception>
    public static PretrainOutcome Execute(HcscOptions options, PretrainSettings settings, TextWriter output, GracefulStop? stop = null, CancellationToken cancellation = default, Hcsc.Core.Distributed.ICollectives? collectives = null)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return new PretrainRun(options, settings, output, stop, collectives).Execute(cancellation);
            }
            catch (TrainingDivergedException e) when (attempt <= settings.DivergenceRetries)
            {
                options.Training.LearningRate /= 2;
                settings = settings with { Resume = "auto" };
                if (collectives is { Rank: > 0 })
                {
                    continue; // rank 0 reports
                }

                output.WriteLine(e.Message);
                output.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"retry {attempt}/{settings.DivergenceRetries}: resuming from the last good checkpoint with learning rate {options.Training.LearningRate:G4} (halved)."));
            }
        }
    }
}
