using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Models.Optimization;

/// <summary>
/// Stochastic gradient descent exactly as <c>torch.optim.SGD</c> (and TorchSharp's <see cref="SGD"/>), with every
/// <see cref="Scalar"/> made explicitly and kept alive for the native call. TorchSharp's own <c>SGD.step</c> converts
/// weight decay, momentum, <c>1 − dampening</c> and <c>±lr</c> implicitly for every parameter of every step; such a
/// temporary can be finalised while libtorch still reads it (dotnet/TorchSharp PR #1496), a rare crash in long runs.
/// </summary>
/// <remarks>
/// For a parameter p with gradient g, per step (PyTorch's formulation, dampening τ, weight decay λ, momentum μ):
/// <code>
/// d = g + λ·p
/// b = d                       (first step)
/// b = μ·b + (1 − τ)·d         (later steps)
/// d = nesterov ? d + μ·b : b  (when μ ≠ 0)
/// p = p − lr·d                (p + lr·d when maximising)
/// </code>
/// The state (momentum buffers) and the options are TorchSharp's <see cref="SGD"/>'s, so <c>save_state_dict</c>
/// files are interchangeable with it: checkpoints written with <see cref="SGD"/> load into this optimiser and back.
/// </remarks>
public sealed class ExplicitScalarSgd : SGD
{
    /// <summary>One parameter group.</summary>
    /// <param name="parameters">The parameters to optimise.</param>
    /// <param name="learningRate">lr ≥ 0.</param>
    /// <param name="momentum">μ ≥ 0 (0: plain SGD).</param>
    /// <param name="dampening">τ.</param>
    /// <param name="weightDecay">λ ≥ 0 (L2 penalty added to the gradient).</param>
    /// <param name="nesterov">Nesterov momentum (needs μ &gt; 0 and τ = 0).</param>
    public ExplicitScalarSgd(IEnumerable<Parameter> parameters, double learningRate, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : base(parameters, learningRate, momentum, dampening, weightDecay, nesterov)
    {
    }

    /// <summary>Several parameter groups, each with its own options (those it leaves unset take the defaults given here).</summary>
    /// <param name="groups">The groups, e.g. a backbone and a classifier with their own learning rates.</param>
    /// <param name="learningRate">Default lr ≥ 0.</param>
    /// <param name="momentum">Default μ ≥ 0.</param>
    /// <param name="weightDecay">Default λ ≥ 0.</param>
    public ExplicitScalarSgd(IEnumerable<ParamGroup> groups, double learningRate, double momentum, double weightDecay)
        : base(groups, learningRate, momentum, dampening: 0, weightDecay, nesterov: false)
    {
    }

    /// <inheritdoc />
    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(UpdateGroup, closure);

    private void UpdateGroup(ParamGroup group)
    {
        var options = group.Options;
        double momentum = options.momentum!.Value;
        double weightDecay = options.weight_decay!.Value;
        bool nesterov = options.nesterov!.Value;
        double lr = options.LearningRate!.Value;
        using var decay = weightDecay.ToScalar();
        using var momentumScalar = momentum.ToScalar();
        using var keep = (1 - options.dampening!.Value).ToScalar();
        using var stepSize = (options.maximize!.Value ? lr : -lr).ToScalar();

        foreach (var parameter in group.Parameters)
        {
            var gradient = parameter.grad;
            if (gradient is null)
            {
                continue;
            }

            var direction = weightDecay != 0 ? gradient.add(parameter, decay) : gradient;
            if (momentum != 0)
            {
                var state = (State)_state[parameter.Handle];
                if (state.momentum_buffer is null)
                {
                    state.momentum_buffer = direction.clone().detach().DetachFromDisposeScope();
                }
                else
                {
                    state.momentum_buffer.mul_(momentumScalar).add_(direction, keep);
                }

                direction = nesterov ? direction.add(state.momentum_buffer, momentumScalar) : state.momentum_buffer;
            }

            parameter.add_(direction, stepSize);
        }
    }
}
