using System.Globalization;
using Hcsc.Models.Optimization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Stops training at the first step whose loss or gradients are not finite, before the optimiser writes them into
/// the weights: one fused check per step (every gradient tested at once with <c>isfinite(g).all()</c> over the flat
/// gradient buffer, read back with the loss in one device sync) and, only when it fails, a second look that names the
/// first parameter affected.
/// </summary>
public sealed class NonFiniteGuard
{
    private readonly (string Name, Parameter Parameter)[] _parameters;
    private readonly string _advice;
    private readonly FlatParameters? _packed;

    /// <param name="parameters">The trained parameters with their names, in the model's order.</param>
    /// <param name="advice">What the user should do, appended to the message (e.g. lower the learning rate and resume).</param>
    /// <param name="packed">The trained parameters' flat buffer when they are packed: its gradients are tested in place;
    /// otherwise the gradients are concatenated for the test (one more kernel).</param>
    public NonFiniteGuard(IEnumerable<(string Name, Parameter Parameter)> parameters, string advice, FlatParameters? packed = null)
    {
        _parameters = parameters.Where(p => p.Parameter.requires_grad).ToArray();
        _advice = advice;
        _packed = packed;
    }

    /// <summary>
    /// Returns the step's loss, or throws <see cref="TrainingDivergedException"/> when <paramref name="loss"/> or a
    /// gradient is NaN or ±Inf.
    /// </summary>
    /// <param name="loss">The step's scalar loss.</param>
    /// <param name="epoch">Epoch number as shown to the user (1-based).</param>
    /// <param name="step">Step within the epoch (1-based).</param>
    public double Check(Tensor loss, int epoch, int step)
    {
        using var scope = NewDisposeScope();
        var gradients = _packed?.Gradients ?? FlatGradients();
        var finite = gradients is null ? ones(1, ScalarType.Float64, loss.device) : isfinite(gradients).all().to(ScalarType.Float64).reshape(1);
        var read = cat([loss.detach().reshape(1).to(ScalarType.Float64), finite]).cpu();   // the step's one host read
        var (lossValue, gradientsFinite) = (read[0].item<double>(), read[1].item<double>() == 1);
        if (double.IsFinite(lossValue) && gradientsFinite)
        {
            return lossValue;
        }

        var values = _parameters.Where(p => p.Parameter.grad is not null).Select(p => linalg.vector_norm(p.Parameter.grad!).to(ScalarType.Float64).item<double>()).Prepend(lossValue).ToArray();
        string where = string.Create(CultureInfo.InvariantCulture, $"in epoch {epoch}, step {step}");
        if (!double.IsFinite(lossValue))
        {
            throw new TrainingDivergedException(epoch, step, $"The loss became {lossValue} {where}; the weights were not updated. {_advice}");
        }

        var first = _parameters.Where(p => p.Parameter.grad is not null).Select((p, i) => (p.Name, Norm: values[i + 1])).First(p => !double.IsFinite(p.Norm));
        throw new TrainingDivergedException(epoch, step,
            $"The gradient of {first.Name} became non-finite {where} (loss {lossValue.ToString("G6", CultureInfo.InvariantCulture)}); the weights were not updated. {_advice}");
    }

    private Tensor? FlatGradients()
    {
        var gradients = _parameters.Where(p => p.Parameter.grad is not null).Select(p => p.Parameter.grad!.reshape(-1)).ToArray();
        return gradients.Length == 0 ? null : cat(gradients);
    }

    /// <summary>
    /// Throws <see cref="TrainingDivergedException"/> when a weight is NaN or ±Inf (an update that overflowed), naming
    /// the first parameter affected; called before a checkpoint is written, so a bad model is never saved.
    /// </summary>
    /// <param name="epoch">The epoch just finished (1-based).</param>
    public void CheckWeights(int epoch)
    {
        using var scope = NewDisposeScope();
        var norms = stack(_parameters.Select(p => linalg.vector_norm(p.Parameter.detach())).ToArray()).to(ScalarType.Float64).cpu().data<double>().ToArray();
        int bad = Array.FindIndex(norms, n => !double.IsFinite(n));
        if (bad >= 0)
        {
            throw new TrainingDivergedException(epoch, 0,
                $"The weights of {_parameters[bad].Name} became non-finite in epoch {epoch}; this epoch is not checkpointed. {_advice}");
        }
    }
}

/// <summary>Training produced a NaN or infinite loss or gradient; the run stopped before the weights took it in.</summary>
public sealed class TrainingDivergedException(int epoch, int step, string message) : InvalidOperationException(message)
{
    /// <summary>The epoch (1-based) of the failing step.</summary>
    public int Epoch { get; } = epoch;

    /// <summary>The step (1-based) within the epoch; 0 when the weights were found non-finite at the end of the epoch.</summary>
    public int Step { get; } = step;
}
