package io.lora4j.fuzz;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import io.lora4j.data.ChatTemplate;
import io.lora4j.data.DatasetFormat;
import io.lora4j.data.DatasetReader;
import io.lora4j.data.Message;
import io.lora4j.train.RunConfig;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Mutation fuzzing of the data-side readers: dataset files of every format (JSONL and JSON
 * arrays, byte and structure mutations), chat templates (mutated built-in sources, and
 * templates built to loop, recurse or blow up their output, which must hit a sandbox limit
 * within the time limit), and YAML run configs.
 */
class DataFuzzTest {
    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();
    private static final ChatTemplate.Tokens TOKENS = new ChatTemplate.Tokens("<s>", "</s>", "<pad>", "<unk>");
    private static final List<Message> CONVO = List.of(new Message("system", "Be brief."), new Message("user", "Capital of Ohio?"),
            new Message("assistant", "Columbus."), new Message("user", "And Texas?"));
    private static Path dir;
    private static List<JsonElement> rows;
    private static String yaml;

    @BeforeContainer
    static void seeds() throws IOException {
        dir = Files.createTempDirectory("fuzz-data");
        rows = new ArrayList<>();
        for (String s : new String[] {
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello!\"}]}",
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Yo\"}]}",
                "{\"instruction\":\"Add\",\"input\":\"1 2\",\"output\":\"3\"}",
                "{\"prompt\":\"The sky is\",\"completion\":\" blue.\"}",
                "{\"text\":\"Call me Ishmael.\"}",
                "{\"input_ids\":[1,2,3,4],\"labels\":[-100,2,3,4],\"attention_mask\":[1,1,1,1]}"})
            rows.add(JsonParser.parseString(s));
        Path y = Path.of("examples/stories15m-qlora.yaml");
        yaml = Files.isRegularFile(y) ? Files.readString(y) : "r: 16\nlora_alpha: 16\nlearning_rate: 2e-4\n";
    }

    @AfterContainer
    static void report() {
        System.out.print(Fuzz.summary("data"));
    }

    @Property(tries = 900, seed = "3407")
    void datasets(@ForAll long s) throws IOException {
        Random r = new Random(s);
        for (int rep = 0; rep < Fuzz.REPEAT; rep++) {
            DatasetFormat format = DatasetFormat.values()[r.nextInt(DatasetFormat.values().length)];
            JsonElement seed = rows.get(r.nextInt(rows.size()));
            StringBuilder sb = new StringBuilder();
            boolean array = r.nextInt(4) == 0;
            int n = 1 + r.nextInt(6);
            if (array) sb.append('[');
            for (int i = 0; i < n; i++) {
                JsonElement row = r.nextInt(3) == 0 ? seed : Fuzz.mutateJson(seed, r);
                if (array) sb.append(i > 0 ? "," : "").append(GSON.toJson(row));
                else sb.append(GSON.toJson(row)).append('\n');
            }
            if (array) sb.append(']');
            byte[] b = sb.toString().getBytes(StandardCharsets.UTF_8);
            if (r.nextInt(4) == 0) b = Fuzz.mutate(b, r, 0);
            Path f = Files.write(dir.resolve(array ? "d.json" : "d.jsonl"), b);
            double maxBad = r.nextBoolean() ? 0.0 : 1.0;
            Fuzz.check("data/dataset", "seed " + s + " " + format + ": " + abbreviate(sb.toString()), () -> DatasetReader.read(f, format, maxBad));
        }
    }

    /** Templates written to hang or explode: each must fail with a TemplateException, quickly. */
    private static final String[] HOSTILE = {
            "{% for i in range(1000000000) %}x{% endfor %}",
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "{% set x = 'ab' %}{% for i in range(60) %}{% set x = x ~ x %}{% endfor %}{{ x }}",
            "{{ 'x' * 1000000000 }}",
            "{% for m in messages %}{% for m2 in messages %}{% for i in range(1000000) %}{{ m.content }}{% endfor %}{% endfor %}{% endfor %}",
            "{{ raise_exception('no system role') }}",
            "{% for i in range(-5, 2147483647, 1) %}{% endfor %}",
            "{% set ns = namespace(a=[]) %}{% for i in range(1000000) %}{% set ns.a = ns.a + [i] %}{% endfor %}{{ ns.a|length }}",
            "{% for x in messages recursive %}{{ loop(messages) }}{% endfor %}",
            "{{ messages[1000000].content }}{{ undefined_thing.x.y }}",
            "{% include 'other.jinja' %}{% import 'x' as y %}",
            "{{ range(10)|join(',')*100000000 }}",
            "{% raw %}{% endraw %}{% for",
    };

    @Property(tries = 14, seed = "3407")
    void hostileTemplates(@ForAll @IntRange(min = 0, max = 13) int i) {
        String src = HOSTILE[i % HOSTILE.length];
        Fuzz.check("data/chat-template-hostile", src, () -> ChatTemplate.jinja("hostile", src, TOKENS).render(CONVO, true));
    }

    @Property(tries = 300, seed = "3407")
    void mutatedBuiltinTemplates(@ForAll long s) {
        Random r = new Random(s);
        ChatTemplate.Builtin b = ChatTemplate.Builtin.values()[r.nextInt(ChatTemplate.Builtin.values().length)];
        byte[] src = b.source().getBytes(StandardCharsets.UTF_8);
        byte[] m = Fuzz.mutate(src, r, 0);
        if (r.nextInt(8) == 0) {
            // splice a hostile snippet into a real template
            String h = HOSTILE[r.nextInt(HOSTILE.length)];
            String t = new String(src, StandardCharsets.UTF_8);
            int at = r.nextInt(t.length() + 1);
            m = (t.substring(0, at) + h + t.substring(at)).getBytes(StandardCharsets.UTF_8);
        }
        String t = new String(m, StandardCharsets.UTF_8);
        Fuzz.check("data/chat-template", b + " seed " + s + ": " + abbreviate(t), () -> {
            ChatTemplate c = ChatTemplate.jinja("fuzz", t, TOKENS);
            return c.render(CONVO, r.nextBoolean());
        });
    }

    @Property(tries = 400, seed = "3407")
    void runConfigYaml(@ForAll long s) throws IOException {
        Random r = new Random(s);
        byte[] b = Fuzz.mutate(yaml.getBytes(StandardCharsets.UTF_8), r, 0);
        if (r.nextInt(5) == 0) {
            // YAML-specific hostility: anchors/aliases (billion laughs), tags, deep nesting
            String[] h = {"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
                    "r: !!java.io.File /etc/passwd\n", "r: " + "[".repeat(5000) + "]".repeat(5000) + "\n", "r: 1e999999\n",
                    "max_steps: 99999999999999999999\n", "target_modules: {q_proj: 1}\n", "- just\n- a list\n", "r: !!binary AAAA\n"};
            b = (yaml + "\n" + h[r.nextInt(h.length)]).getBytes(StandardCharsets.UTF_8);
        }
        Path f = Files.write(dir.resolve("run.yaml"), b);
        Fuzz.check("data/run-config.yaml", "seed " + s + ": " + abbreviate(new String(b, StandardCharsets.UTF_8)),
                () -> RunConfig.load(f, Map.of()));
    }

    static String abbreviate(String s) {
        s = s.replace("\n", "\\n");
        return s.length() > 300 ? s.substring(0, 300) + "..." : s;
    }
}
