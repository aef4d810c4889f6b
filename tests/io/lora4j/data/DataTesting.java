package io.lora4j.data;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Helpers shared by the data tests. */
final class DataTesting {
    private DataTesting() {}

    /** The decoded text of every maximal run of label-carrying tokens. */
    static List<String> trainedSpans(io.lora4j.tokenizer.Tokenizer tok, int[] ids, int[] labels) {
        TokenText t = TokenText.of(tok, ids);
        List<String> out = new ArrayList<>();
        int i = 0;
        while (i < ids.length) {
            if (labels[i] == Example.IGNORE_INDEX) {
                i++;
                continue;
            }
            int j = i;
            while (j < ids.length && labels[j] != Example.IGNORE_INDEX) {
                if (labels[j] != ids[j]) throw new AssertionError("label " + labels[j] + " at " + j + " is not the id " + ids[j]);
                j++;
            }
            out.add(t.text(i, j));
            i = j;
        }
        return out;
    }

    static Path write(Path dir, String name, String... lines) throws IOException {
        Path p = dir.resolve(name);
        Files.createDirectories(p.toAbsolutePath().getParent());
        Files.writeString(p, String.join("\n", lines) + "\n", StandardCharsets.UTF_8);
        return p;
    }

    static String resource(String name) throws IOException {
        try (InputStream in = DataTesting.class.getResourceAsStream("/data/" + name)) {
            if (in == null) throw new IOException("test resource /data/" + name + " is missing");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }
}
