using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Commands;

namespace Hcsc.Tests.Sample;

public class PresetTests
{
    public static TheoryData<string> Names => new(Presets.All.Keys);

    [Theory]
    [MemberData(nameof(Names))]
    public void Every_preset_binds_and_validates(string name)
    {
        using var error = new StringWriter();
        var options = HcscOptionsLoader.Load(Presets.All[name], null, new Dictionary<string, string?>(), error);
        error.ToString().Should().BeEmpty($"the {name} preset uses only current keys and valid values");
        options.Should().NotBeNull();
        HcscOptionsValidator.Problems(options!).Should().BeEmpty();
    }

    [Fact]
    public void A_key_of_an_earlier_version_names_the_key_that_replaced_it()
    {
        using var error = new StringWriter();
        var options = HcscOptionsLoader.Load(Presets.All["synthetic-quick"], null, new Dictionary<string, string?> { ["Model:Temperature"] = "0.1" }, error);
        options.Should().BeNull();
        error.ToString().Should().Contain("'Model:Temperature' is now 'Objective:Temperature'");
    }
}
