using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Tests.Sample;

public class GpuBindingTests
{
    [Fact]
    public void Each_rank_of_a_machine_takes_the_gpu_of_its_local_rank()
    {
        // Two machines of two ranks each, launcher local ranks given.
        GpuBinding.Assign([7, 7, 9, 9], [0, 1, 0, 1], [2, 2, 2, 2], fixedIndex: null).Should().Equal(0, 1, 0, 1);
        // No launcher variables: the rank's place among its machine's ranks, as an MPI shared-memory split gives.
        GpuBinding.Assign([7, 9, 7, 9], [-1, -1, -1, -1], [2, 2, 2, 2], fixedIndex: null).Should().Equal(0, 0, 1, 1);
        // cuda:N on one rank per machine is fine.
        GpuBinding.Assign([7, 9], [0, 0], [4, 4], fixedIndex: 3).Should().Equal(3, 3);
    }

    [Fact]
    public void Two_ranks_on_one_gpu_are_refused_with_what_to_do()
    {
        FluentActions.Invoking(() => GpuBinding.Assign([7, 7], [0, 1], [2, 2], fixedIndex: 0))
            .Should().Throw<InvalidOperationException>().WithMessage("Ranks 0 and 1 run on one machine and would both use cuda:0*Use --device cuda (not cuda:0)*");
        FluentActions.Invoking(() => GpuBinding.Assign([7, 7, 7], [0, 1, 2], [2, 2, 2], fixedIndex: null))
            .Should().Throw<InvalidOperationException>().WithMessage("Rank 2 would use cuda:2, but its machine shows 2 CUDA device(s) and runs 3 rank(s)*-npernode 2*");
        FluentActions.Invoking(() => GpuBinding.Assign([7, 7], [0, 0], [2, 2], fixedIndex: null))
            .Should().Throw<InvalidOperationException>().WithMessage("*both use cuda:0*own local rank*");
    }
}
